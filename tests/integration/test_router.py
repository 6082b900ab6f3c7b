"""The Router on real parts: the real API server, a real edge node, real brokers, a real HTTP server.

A device's upload on the node's broker reaches an HTTP server in the test (POSTed again after it
first answers 500) and the Rule's status counts it; an HTTP call to the router reaches a subscriber
on the node's broker; a call made while the node's link is down arrives when it is back; a Rule for
another node's uploads, a malformed call and a servicebus Rule change nothing, and the servicebus Rule
says why in its status.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster, node_names

GROUP, VERSION = "rules.kubeedge.io", "v1"


class Target(ThreadingHTTPServer):
    """Answers 500 to its first POST, 200 after; keeps every request's body and NodeName header."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TargetHandler)
        self.lock = threading.Lock()
        self.calls: list[tuple[int, bytes, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ingest"


class TargetHandler(BaseHTTPRequestHandler):
    server: Target

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            status = 500 if not self.server.calls else 200
            self.server.calls.append((status, body, self.headers.get("NodeName", "")))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def create(cluster: Cluster, plural: str, name: str, spec: dict[str, Any]) -> None:
    api = k8s.CustomObjectsApi(cluster.api.client)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Rule" if plural == "rules" else "RuleEndpoint",
            "metadata": {"name": name}, "spec": spec}

    def made() -> bool:  # DeviceController installs the CRDs; the API serves them once established
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural, body)
        except k8s.exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_until(made, timeout=30, what=f"{plural} {name} created")


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    api = k8s.CustomObjectsApi(cluster.api.client)
    found = api.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "rules", name)
    return dict(found.get("status") or {})


def call(cluster: Cluster, path: str, body: bytes, content_type: str = "text/plain") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.router_port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_router_rules_both_ways(cluster_factory: Any, target: Target) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    cluster.start_cloud("router")
    ns = cluster.namespace
    create(cluster, "ruleendpoints", "my-rest", {"ruleEndpointType": "rest"})
    create(cluster, "ruleendpoints", "my-eventbus", {"ruleEndpointType": "eventbus"})
    create(cluster, "ruleendpoints", "my-servicebus", {"ruleEndpointType": "servicebus",
                                                       "properties": {"service_port": "8080"}})
    create(cluster, "rules", "up", {"source": "my-eventbus", "target": "my-rest", "targetResource": {
        "resource": target.url}, "sourceResource": {"topic": "$hw/events/upload/thermo", "node_name": node}})
    create(cluster, "rules", "elsewhere", {"source": "my-eventbus", "target": "my-rest", "targetResource": {
        "resource": target.url}, "sourceResource": {"topic": "$hw/events/upload/other", "node_name": "edge-away"}})
    create(cluster, "rules", "down", {"source": "my-rest", "sourceResource": {"path": "/cmd"},
                                      "target": "my-eventbus", "targetResource": {"topic": "cmd/in"}})
    create(cluster, "rules", "sb", {"source": "my-rest", "sourceResource": {"path": "/sb"},
                                    "target": "my-servicebus", "targetResource": {"path": "/x"}})

    wait_until(lambda: any("servicebus" in e for e in status(cluster, "sb").get("errors", [])), timeout=20,
               what="the servicebus Rule's status saying it is not supported")
    wait_until(lambda: call(cluster, f"/{node}/{ns}/cmd", b"probe")[0] == 200, timeout=20,
               what="the router taking calls for the rest-to-eventbus Rule")

    edge, link = cluster.nodes[node]
    with TestClient(edge.edge_broker.host, edge.edge_broker.port) as dev:
        # eventbus -> rest. The other node's Rule first: had it been carried, its POST would come first.
        dev.publish("$hw/events/upload/other", b'{"not": "mine"}')
        dev.publish("$hw/events/upload/thermo", b'{"temperature": "23.5"}')
        wait_until(lambda: len(target.calls) >= 2, timeout=30, what="the upload POSTed again after a 500")
        assert target.calls[0] == (500, b'{"temperature": "23.5"}', node)
        assert target.calls[1] == (200, b'{"temperature": "23.5"}', node)
        wait_until(lambda: status(cluster, "up").get("successMessages") == 1, timeout=20,
                   what="successMessages 1 on the Rule")
        assert status(cluster, "up").get("failMessages", 0) == 0
        assert status(cluster, "elsewhere").get("successMessages", 0) == 0

        # rest -> eventbus; refused calls first: had one gone through, it would arrive before the good one.
        dev.subscribe("cmd/in/#")
        assert call(cluster, f"/{node}/{ns}/cmd/x", b"{oops", "application/json")[0] == 400
        assert call(cluster, f"/edge-away/{ns}/cmd/x", b"on")[0] == 404
        assert call(cluster, f"/{node}/{ns}/nothing", b"on")[0] == 404
        code, text = call(cluster, f"/{node}/{ns}/cmd/x", b'{"switch": "on"}', "application/json")
        assert (code, text) == (200, b"message delivered")
        received = dev.expect(timeout=20)
        while received.topic == "cmd/in":  # the readiness probes above, published on the bare topic
            received = dev.expect(timeout=20)
        assert (received.topic, received.payload) == ("cmd/in/x", b'{"switch": "on"}')

        # The node's link down: the call is queued for the node (CloudHub's reliable queue) and arrives once the
        # link is back, as any object for the node would.
        link.down()
        assert call(cluster, f"/{node}/{ns}/cmd/late", b"later")[:1] == (200,)
        link.up()
        received = dev.expect(timeout=60)
        assert (received.topic, received.payload) == ("cmd/in/late", b"later")
    assert len(target.calls) == 2
