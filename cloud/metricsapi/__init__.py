"""The metrics API (``metrics.k8s.io``) for ``kubectl top`` of edge nodes and pods: an aggregated API server."""
