"""The HTTPS endpoint edge nodes join through."""
