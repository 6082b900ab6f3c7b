"""The cloud stream server: every edge node's kubelet endpoint, tunnelled to the nodes over their links."""
