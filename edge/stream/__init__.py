"""The node's stream end: kubelet requests tunnelled from the cloud stream server, served from podman."""
