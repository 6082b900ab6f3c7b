"""Mappers: one process per device protocol, talking to the edge only through DMI (gRPC on Unix sockets)."""
