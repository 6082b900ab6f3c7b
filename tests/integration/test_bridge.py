"""The bridge under faults: killed twice and the edge broker restarted, 10,000 messages each way arrive."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Op, decode
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.stream import StreamEnd

NODE = "node-1"
USERS = {"cloud": "cloud-secret", NODE: "node-secret"}
TOTAL = 10_000


class BridgeProcess:
    """The bridge as its own process, killed and restarted by the test."""

    def __init__(self, cloud: Broker, edge: Broker, workdir: Path) -> None:
        self.argv = [sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", edge.url(),
                     "--cloud", cloud.url(NODE, USERS[NODE])]
        self.workdir = workdir
        self.starts = 0
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        self.starts += 1
        self.process = ManagedProcess(f"bridge-{self.starts}", self.argv, self.workdir / f"bridge-{self.starts}.log")
        self.process.start()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def wait_link_up(edge: Broker) -> None:
    """The bridge's retained link state on the edge broker says ``up`` (it then carries traffic both ways)."""
    with TestClient(edge.host, edge.port) as client:
        client.subscribe(topics.link_state(NODE))
        wait_until(lambda: decode(client.expect().payload).op == Op.CONNECTED, timeout=30, what="link state up")


def connection(url: str, client_id: str) -> Connection:
    return Connection(ConnectionSettings(url=BrokerUrl.parse(url), client_id=client_id, clean_start=False,
                                         window=200), name=client_id).start()


@pytest.fixture(params=["amqtt", "mosquitto"], ids=["cloud-amqtt", "cloud-mosquitto"])
def link(request: pytest.FixtureRequest, edgehive_broker: BrokerFactory,
         tmp_path: Path) -> Iterator[tuple[Broker, Broker, BridgeProcess]]:
    cloud = edgehive_broker(request.param, users=USERS)
    edge = edgehive_broker("amqtt")
    bridge = BridgeProcess(cloud, edge, tmp_path)
    bridge.start()
    wait_link_up(edge)
    yield cloud, edge, bridge
    bridge.stop()


@pytest.mark.parametrize("restart_edge_broker", [False, True], ids=["bridge-kills", "bridge-kills+edge-restart"])
def test_every_message_arrives_through_faults(link: tuple[Broker, Broker, BridgeProcess],
                                              restart_edge_broker: bool) -> None:
    cloud, edge, bridge = link
    cloud_conn = connection(cloud.url("cloud", USERS["cloud"]), "test-cloud-end")
    edge_conn = connection(edge.url(), "test-edge-end")
    # As the delivery protocol does, each end resends what the other has not acknowledged:
    # a broker restart loses what it held in memory, and amqtt drops the QoS 1 messages
    # it had in flight to a client that disconnects (it does not redeliver them).
    down = StreamEnd("cloud", cloud_conn, topics.link_down(NODE), topics.link_up(NODE), TOTAL)
    up = StreamEnd("edge", edge_conn, topics.link_up(NODE), topics.link_down(NODE), TOTAL)
    try:
        assert cloud_conn.wait_connected(10)
        assert edge_conn.wait_connected(10)
        t0 = time.monotonic()
        down.start()
        up.start()

        def reached(fraction: float) -> bool:
            return min(down.expected, up.expected) >= fraction * TOTAL

        faults = [(0.2, "kill bridge"), (0.45, "kill bridge")]
        if restart_edge_broker:
            faults.append((0.7, "restart edge broker"))
        for fraction, fault in faults:
            wait_until(partial(reached, fraction), timeout=240, what=f"{fraction:.0%} progress")
            if fault == "kill bridge":
                bridge.kill()
                bridge.start()
            else:
                edge.restart()
        wait_until(lambda: down.done and up.done, timeout=180,
                   what=f"all {TOTAL} messages each way (down {down.expected}, up {up.expected})")
        elapsed = time.monotonic() - t0
    finally:
        down.stop()
        up.stop()
        cloud_conn.close(drain_timeout=1)
        edge_conn.close(drain_timeout=1)

    for received_by in (down, up):
        # each end accepted exactly 0..TOTAL-1 in order (go-back-N accepts nothing else)
        assert received_by.expected == TOTAL
        assert received_by.stats.accepted == TOTAL
        assert len(received_by.stats.seen) == TOTAL
    if cloud.kind == "edgehive-mosquitto" and not restart_edge_broker:
        # mosquitto redelivers what the killed bridge had not acknowledged: cloud to edge, the
        # bridge alone lost nothing, so nothing had to be sent twice end to end.
        assert down.stats.resent == 0
        assert up.stats.gaps == 0
    print(f"\n{cloud.kind} cloud, {len(faults)} faults, {elapsed:.1f} s; "
          f"cloud->edge: resent {down.stats.resent}, at the edge {up.stats}; "
          f"edge->cloud: resent {up.stats.resent}, in the cloud {down.stats}")
