"""Cloud components as replicas: which replica serves which node, and who is alive (Leases in the API)."""
