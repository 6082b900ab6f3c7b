"""The whole real chain a node's stream server faces: kubectl -> kube-apiserver v1.20.2 -> our SPDY code.

The test server stands where a kubelet would (HTTPS on the Node's advertised address and kubelet port); the
API server dials it and relays the upgraded connection unchanged, so the requests it sees are the kubelet's
own (``POST /exec/NS/POD/CONTAINER?command=...&output=1``) and the SPDY conversation is kubectl's.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from edgehive.localcluster import STREAM_CERT, STREAM_KEY
from tests.fixtures.apiserver import ApiServer
from tests.support.forwarding import PortForward, echo_server, round_trip
from tests.support.kubectl_stream_server import KubectlStreamServer

pytestmark = pytest.mark.slow
TIMEOUT_S = 60.0


@pytest.fixture(params=["spdy", "websocket"])
def kubelet(request: pytest.FixtureRequest, apiserver: ApiServer) -> Iterator[KubectlStreamServer]:
    """The node's kubelet endpoint; "spdy" refuses kubectl's WebSocket try (as a v1.20 kubelet does) and
    "websocket" takes it, the API server relaying either unchanged. It serves the stream server's
    certificate: the API server checks a kubelet's against its CA (--kubelet-certificate-authority)."""
    pki = apiserver.ca_file.parent
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / STREAM_CERT, pki / STREAM_KEY)
    running = KubectlStreamServer(tls=context, websocket=request.param == "websocket").start()
    yield running
    running.stop()


@pytest.fixture
def pod_on_node(apiserver: ApiServer, kubelet: KubectlStreamServer) -> Iterator[tuple[str, str]]:
    """A Running pod on a Node whose kubelet endpoint is the test server: (namespace, pod name)."""
    core = k8s.CoreV1Api(apiserver.client)
    suffix = secrets.token_hex(4)
    namespace, node = f"spdy-{suffix}", f"spdy-node-{suffix}"
    port = int(kubelet.url.rsplit(":", 1)[1])
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_node({"metadata": {"name": node}})
    core.patch_node_status(node, {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                             "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})
    pod: dict[str, Any] = {"metadata": {"name": "web"}, "spec": {
        "nodeName": node, "containers": [{"name": "main", "image": "localhost/busybox"}]}}
    core.create_namespaced_pod(namespace, pod)
    core.patch_namespaced_pod_status("web", namespace, {"status": {"phase": "Running"}})
    yield namespace, "web"
    core.delete_namespace(namespace)
    core.delete_node(node)


@pytest.fixture
def echo_port() -> Iterator[int]:
    with echo_server() as port:
        yield port


def kubectl(apiserver: ApiServer, namespace: str, *args: str,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["kubectl", "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace, *args],
                          input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False)


def test_exec_through_the_api_server_reaches_the_kubelet_path_and_keeps_the_exit_code(
        apiserver: ApiServer, kubelet: KubectlStreamServer, pod_on_node: tuple[str, str]) -> None:
    namespace, pod = pod_on_node
    result = kubectl(apiserver, namespace, "exec", pod, "--", "sh", "-c", "echo hi; echo err >&2; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout == b"hi\n"
    assert b"err\n" in result.stderr
    upgrade = f"{'GET' if kubelet.websocket else 'POST'} /exec/{namespace}/{pod}/main?"
    served = [line for line in kubelet.log.requests if line.startswith(upgrade)]
    assert served, kubelet.log.requests
    assert "output=1" in served[-1]
    assert "error=1" in served[-1]
    assert "stdout=" not in served[-1]
    assert kubelet.log.upgraded == [f"exec {'v5.channel.k8s.io' if kubelet.websocket else 'v4.channel.k8s.io'}"]


def test_exec_with_stdin_through_the_api_server_round_trips_a_megabyte(
        apiserver: ApiServer, kubelet: KubectlStreamServer, pod_on_node: tuple[str, str]) -> None:
    namespace, pod = pod_on_node
    payload = os.urandom(1_000_000)
    result = kubectl(apiserver, namespace, "exec", "-i", pod, "--", "cat", stdin=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    assert any(line.startswith(f"/exec/{namespace}/{pod}/main?", line.index(" ") + 1) and "input=1" in line
               for line in kubelet.log.requests)


def test_port_forward_through_the_api_server_reaches_the_pods_port(
        apiserver: ApiServer, kubelet: KubectlStreamServer, pod_on_node: tuple[str, str], echo_port: int) -> None:
    namespace, pod = pod_on_node
    forward = PortForward(["kubectl", "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace], pod, echo_port)
    try:
        payload = os.urandom(1_000_000)
        assert round_trip(forward.local_port, payload) == payload
        assert f"{'GET' if kubelet.websocket else 'POST'} /portForward/{namespace}/{pod}" in kubelet.log.requests
    finally:
        forward.stop()
