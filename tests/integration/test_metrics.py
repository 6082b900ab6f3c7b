"""Prometheus metrics from a real component process: counters by topic class and reason, commit times."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey
from tests.fixtures.brokers import Broker
from tests.fixtures.mqtt import MqttError, TestClient
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def value(port: int, sample: str) -> float:
    """The value of one sample (``name{labels}``) in the scrape, or -1 when it is absent."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", scrape(port), re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def test_metamanager_metrics(edgehive_broker: Callable[..., Broker], tmp_path: Path) -> None:
    broker = edgehive_broker("mosquitto")
    port = free_port()
    process = ManagedProcess("metamanager", [
        sys.executable, "-m", "edge.metamanager", "--node", "m-node", "--broker", broker.url(),
        "--db", str(tmp_path / "meta.db"), "--metrics-listen", f"127.0.0.1:{port}"], tmp_path / "mm.log").start()
    try:
        wait_until(lambda: "edgehive_broker_reconnects" in scrape(port), timeout=20, what="/metrics",
                   alive=process)
        with TestClient("127.0.0.1", broker.port) as client:
            key = ResourceKey("default", "configmap", "c1")
            good = Envelope(node="m-node", src="cloudhub", group=Group.RESOURCE, op=Op.INSERT, res=key, rv="3",
                            body={"metadata": {"name": "c1", "namespace": "default", "uid": "u",
                                               "resourceVersion": "3"}, "data": {}})
            client.publish(topics.from_cloud("metamanager"), good.encode())
            client.publish(topics.from_cloud("metamanager"), b"\x93not an envelope")
        wait_until(lambda: 'edgehive_sqlite_commit_seconds_count{component="metamanager",node="m-node"} 1.0'
                   in scrape(port), timeout=20, what="one commit timed", alive=process)
        text = scrape(port)
        assert 'edgehive_messages_received_total{component="metamanager",node="m-node",topic_class="from-cloud"} 2.0' \
            in text
        assert 'edgehive_messages_sent_total{component="metamanager",node="m-node",topic_class="to-cloud"}' in text
        assert 'edgehive_errors_total{component="metamanager",node="m-node",reason="invalid"} 1.0' in text
        assert "process_resident_memory_bytes" in text
    finally:
        process.stop()


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_broker_metrics(kind: str, tmp_path: Path) -> None:
    """The broker as shipped (``edgehive run broker``): clients, messages and refusals on /metrics."""
    port, metrics_port = free_port(), free_port()
    broker = ManagedProcess(f"{kind}-broker", [
        sys.executable, "-m", "edgehive", "run", "broker", "--kind", kind, "--listen", f"127.0.0.1:{port}",
        "--metrics-listen", f"127.0.0.1:{metrics_port}"], tmp_path / "broker.log",
        env={**os.environ, "EDGEHIVE_STATE_DIR": str(tmp_path / "state"),
             "EDGEHIVE_BROKER_USERS": "cloud:s3cret,edge-m:n0de"}).start()
    try:
        client = wait_until(lambda: TestClient("127.0.0.1", port, username="cloud", password="s3cret").connect(),
                            timeout=20, what=f"{kind} accepting the cloud user", alive=broker)
        try:
            for i in range(3):
                client.publish("edgehive/link/edge-m/down", b"m%d" % i)
            with pytest.raises(MqttError):
                TestClient("127.0.0.1", port, username="edge-m", password="wrong", timeout=5).connect()
            label = f'{{broker="{kind}"}}'
            # mosquitto publishes its $SYS figures every 5 s: wait for them.
            wait_until(lambda: value(metrics_port, f"edgehive_broker_messages_received_total{label}") >= 3,
                       timeout=20, what="three publishes counted", alive=broker)
            assert value(metrics_port, f"edgehive_broker_clients_connected{label}") >= 1
            assert value(metrics_port, f"edgehive_broker_retained_messages{label}") >= 0
            if kind == "amqtt":  # mosquitto does not count refused clients in $SYS
                assert value(metrics_port, f"edgehive_broker_connections_refused_total{label}") == 1
            else:
                assert value(metrics_port, f"edgehive_broker_restarts_total{label}") == 0
        finally:
            client.close()
    finally:
        broker.stop()


def test_bridge_metrics(edgehive_broker: Callable[..., Broker], tmp_path: Path) -> None:
    """The bridge's two connections, what it forwarded each way, and a reconnect after the cloud broker returns."""
    cloud, edge = edgehive_broker("mosquitto"), edgehive_broker("mosquitto")
    port = free_port()
    bridge = ManagedProcess("bridge", [
        sys.executable, "-m", "broker.bridge", "--node", "edge-b", "--cloud", cloud.url(), "--edge", edge.url(),
        "--metrics-listen", f"127.0.0.1:{port}"], tmp_path / "bridge.log").start()
    try:
        cloud_up = 'edgehive_bridge_connected{node="edge-b",side="cloud"}'
        wait_until(lambda: value(port, cloud_up) == 1 and
                   value(port, 'edgehive_bridge_connected{node="edge-b",side="edge"}') == 1,
                   timeout=20, what="both sides connected", alive=bridge)
        with TestClient("127.0.0.1", edge.port) as on_edge, TestClient("127.0.0.1", cloud.port) as on_cloud:
            on_edge.subscribe(topics.link_down("edge-b"))
            on_cloud.subscribe(topics.link_up("edge-b"))
            on_cloud.publish(topics.link_down("edge-b"), b"down-1")
            on_edge.publish(topics.link_up("edge-b"), b"up-1")
            on_edge.publish(topics.link_up("edge-b"), b"up-2")
            assert on_edge.expect().payload == b"down-1"
            assert on_cloud.expect().payload == b"up-1"
        wait_until(lambda: value(port, 'edgehive_bridge_forwarded_total{direction="up",node="edge-b"}') == 2,
                   timeout=10, what="two forwarded up", alive=bridge)
        assert value(port, 'edgehive_bridge_forwarded_total{direction="down",node="edge-b"}') == 1
        cloud.stop()
        wait_until(lambda: value(port, cloud_up) == 0, timeout=20, what="the cloud side down", alive=bridge)
        cloud.start()
        wait_until(lambda: value(port, cloud_up) == 1, timeout=20, what="the cloud side back", alive=bridge)
        assert value(port, 'edgehive_bridge_reconnects_total{node="edge-b",side="cloud"}') == 1
        assert value(port, 'edgehive_bridge_reconnects_total{node="edge-b",side="edge"}') == 0
    finally:
        bridge.stop()
