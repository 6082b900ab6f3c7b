"""What an edge Node advertises as its kubelet endpoint: the cloud stream server.

The API server reaches a node's kubelet at the node's preferred address (``--kubelet-preferred-address-types``,
by default Hostname first) and ``status.daemonEndpoints.kubeletEndpoint.Port``. An edge node behind NAT has
no address the API server can reach, so EdgeController writes, in each edge node's status, the stream
server's port and, as the node's ``Hostname`` address, the stream server's host: the API server's kubelet
requests for any edge node then reach the stream server, which finds the node from the pod in the path.
The node's ``InternalIP`` stays what the node reported (``kubectl get nodes -o wide`` shows it); only
the Hostname address, which nothing else at the edge uses, is given over to the tunnel.
"""

from __future__ import annotations

from typing import Any

from runtime.address import Address


def kubelet_endpoint(status: dict[str, Any], stream_server: Address | None) -> dict[str, Any]:
    """``status`` (a node status patch) with the stream server as its kubelet endpoint; unchanged without one."""
    if stream_server is None:
        return status
    addresses = [a for a in status.get("addresses", []) if a.get("type") != "Hostname"]
    return {**status, "addresses": [*addresses, {"type": "Hostname", "address": stream_server.host}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": stream_server.port}}}


def endpoint_repair(current: dict[str, Any], stream_server: Address | None) -> dict[str, Any] | None:
    """The status patch that makes ``current`` (a Node's status as the API server holds it) advertise the stream
    server, or None when it already does (or there is none). A node sends its status only when it changed or
    every few minutes (edge/edged/nodereport.py), so a Node written by an EdgeController that had another stream
    server, or none, is put right when the node is next heard, not at its next status."""
    if stream_server is None:
        return None
    wanted = kubelet_endpoint({"addresses": list(current.get("addresses") or [])}, stream_server)
    port = ((current.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    hostnames = [a.get("address") for a in current.get("addresses") or [] if a.get("type") == "Hostname"]
    if port == stream_server.port and hostnames == [stream_server.host]:
        return None
    return wanted
