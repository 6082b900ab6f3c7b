"""Prometheus metrics from a real component process: counters by topic class and reason, commit times."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey
from tests.fixtures.brokers import Broker
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


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
