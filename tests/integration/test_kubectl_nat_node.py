"""kubectl against an edge node behind NAT, on the real parts: two edge nodes, the second with its broker, bridge,
components, podman and pods in a network namespace that nothing on the cloud's host can connect into
(tests/support/natns.py). What reaches its pods can only have come through the node's link."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from typing import Any

from tests.fixtures.processes import wait_until
from tests.integration.test_kubectl_logs import WRITER, kubectl, logs, start_pod
from tests.support.cluster import Cluster, node_names
from tests.support.forwarding import PortForward
from tests.support.natns import NatNamespace, entered

HTTP_PORT = 8080
SERVER = (f"echo far 1; echo far 2; mkdir -p /www && echo served from behind NAT > /www/index.html; "
          f"exec httpd -f -p {HTTP_PORT} -h /www")
CONNECT_TIMEOUT_S = 3.0


def _connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _bridge_of(ns: NatNamespace, address: str) -> str:
    """The device the namespace routes ``address`` through."""
    route = subprocess.run(["ip", "-n", ns.name, "-o", "route", "get", address], capture_output=True, text=True,
                           check=True, timeout=30).stdout.split()
    return route[route.index("dev") + 1]


def _cluster(cluster_factory: Any, nat_namespace: Any) -> tuple[Cluster, str, str, NatNamespace]:
    near, far = node_names(2)
    ns: NatNamespace = nat_namespace()
    cluster: Cluster = cluster_factory([near], behind_nat={far: ns})
    return cluster, near, far, ns


def test_nothing_on_the_cloud_side_reaches_the_node_behind_nat(cluster_factory: Any, nat_namespace: Any) -> None:
    cluster, _near, far, ns = _cluster(cluster_factory, nat_namespace)
    addresses = {a.type: a.address for a in cluster.core.read_node(far).status.addresses}
    assert addresses["InternalIP"] == ns.address  # what the node sees of itself, behind its NAT
    assert addresses["Hostname"] == "127.0.0.1"  # the stream server: where the API server goes for its kubelet

    start_pod(cluster, "far-web", far, SERVER)
    pod_ip = cluster.pod("far-web").status.pod_ip
    # The pod's network is the namespace's: podman made its CNI bridge there.
    bridge = _bridge_of(ns, pod_ip)
    assert bridge != "eth0"
    link = subprocess.run(["ip", "-n", ns.name, "-d", "link", "show", bridge], capture_output=True, text=True,
                          check=True, timeout=30).stdout
    assert " bridge " in link, link
    assert subprocess.run(["ip", "link", "show", ns.veth], capture_output=True, check=False).returncode == 0

    with entered(ns.name):
        listener = socket.create_server(("0.0.0.0", 0))  # on every address of the node, as a kubelet's 10250
    with listener:
        port = listener.getsockname()[1]
        with entered(ns.name):  # on the edge machine, both answer
            assert _connects(ns.address, port)
            page = urllib.request.urlopen(f"http://{pod_ip}:{HTTP_PORT}/", timeout=10).read()
        assert page == b"served from behind NAT\n"
        # From the cloud's host, neither does: new connections into the namespace are dropped, not refused.
        t0 = time.monotonic()
        assert not _connects(ns.address, port)
        assert time.monotonic() - t0 >= CONNECT_TIMEOUT_S * 0.9  # a timeout: the SYN went nowhere
        assert not _connects(pod_ip, HTTP_PORT)
        assert not _connects(ns.address, 10250)  # and no kubelet port there either


def test_kubectl_logs_reach_the_node_behind_nat_through_its_link(cluster_factory: Any, nat_namespace: Any) -> None:
    cluster, near, far, _ns = _cluster(cluster_factory, nat_namespace)
    start_pod(cluster, "far-web", far, SERVER)
    start_pod(cluster, "near-writer", near, WRITER)
    wait_until(lambda: logs(cluster, "far-web") == "far 1\nfar 2\n", timeout=15, what="the far pod's lines in its log")
    assert logs(cluster, "far-web", "--tail=1") == "far 2\n"
    assert logs(cluster, "far-web", "--limit-bytes=7") == "far 1\nf"
    assert logs(cluster, "near-writer") == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"

    # The link is the only path: without it, the far node's logs fail at once with the reason; the near node's
    # still come.
    _edge, link = cluster.nodes[far]
    link.down()
    down = f"node {far} is not connected: its link to the cloud is down"
    wait_until(lambda: down in kubectl(cluster, "logs", "far-web", check=False).stderr, timeout=30,
               what="kubectl logs refused while the far node's link is down")
    assert logs(cluster, "near-writer", "--tail=1") == "oops\n"
    link.up()
    wait_until(lambda: kubectl(cluster, "logs", "far-web", check=False).stdout == "far 1\nfar 2\n",
               timeout=30, what="kubectl logs of the far pod working again once its link is back")


def test_kubectl_exec_and_port_forward_reach_the_node_behind_nat(cluster_factory: Any, nat_namespace: Any) -> None:
    """The pod that nothing on the cloud's host can connect to (above) runs commands and answers HTTP for kubectl,
    through the node's link."""
    cluster, _near, far, _ns = _cluster(cluster_factory, nat_namespace)
    start_pod(cluster, "far-web", far, SERVER)
    assert kubectl(cluster, "exec", "far-web", "--", "cat", "/www/index.html").stdout == "served from behind NAT\n"
    failed = kubectl(cluster, "exec", "far-web", "--", "sh", "-c", "echo refused >&2; exit 3", check=False)
    assert failed.returncode == 3
    assert failed.stderr.startswith("refused\n")
    forward = PortForward(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace],
                          "far-web", HTTP_PORT)
    try:
        url = f"http://127.0.0.1:{forward.local_port}/"
        assert urllib.request.urlopen(url, timeout=30).read() == b"served from behind NAT\n"
    finally:
        forward.stop()
