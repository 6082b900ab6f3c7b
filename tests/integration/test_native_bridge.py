"""``--bridge native`` on real parts: the edge mosquitto with the sections broker/nativebridge.py writes, bridged to a
real cloud broker (our mosquitto or amqtt, users and the link ACL on) through a proxy the test can cut, and a real
EdgeHub with ``--bridge native``.

What it shows: EdgeHub's cloud link follows mosquitto's own notification (connected, disconnected at a cut within a
deadline, connected again at the heal); EdgeHub's up path (its hello keepalive and an outbox entry) reaches the
cloud's up topic and the cloud's down topic reaches the edge broker and EdgeHub's routing; the stream connection
carries frames; and the cloud broker holds a retained ``1`` on the node's hello while the link is up and the will,
a retained ``0``, once it is cut; EdgeHub's hello repeat is published on the edge broker; with no bridge process and
so no bridge metrics, EdgeHub's own (``edgehive_link_up``, the link's drops and connects) follow the cut and the heal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from broker.nativebridge import bridge_sections
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Group, Op, decode
from schemas.resource import ResourceKey
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient, mqtt_ready
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.integration.test_metrics import value
from tests.support.tcpproxy import CuttableProxy

pytestmark = pytest.mark.slow

NODE = "edge-1"
USERS = {"cloud": "cloud-pw", NODE: "node-pw"}
LINK_DEADLINE_S = 20.0
"""A cut closes the sockets, so both brokers see it at once; mosquitto's restart_timeout is 1 to 5 s."""


@dataclass
class NativeNode:
    cloud: Broker
    proxy: CuttableProxy
    edge_host: str
    edge_port: int
    edge_broker: ManagedProcess
    edgehub: ManagedProcess
    metrics_port: int

    def edge_client(self) -> TestClient:
        return TestClient(self.edge_host, self.edge_port, timeout=LINK_DEADLINE_S)

    def cloud_client(self) -> TestClient:
        return TestClient(self.cloud.host, self.cloud.port, username="cloud", password=USERS["cloud"],
                          timeout=LINK_DEADLINE_S)


def _envelope_until(client: TestClient, topic: str, match: Callable[[Envelope], bool],
                    deadline: float = LINK_DEADLINE_S) -> Envelope:
    """The first envelope on ``topic`` for which ``match(envelope)`` holds (skipping the others)."""
    found: list[Envelope] = []

    def probe() -> bool:
        message = client.expect(deadline)
        if message.topic != topic:
            return False
        envelope = decode(message.payload)
        if match(envelope):
            found.append(envelope)
            return True
        return False

    wait_until(probe, timeout=deadline, what=f"an envelope on {topic}")
    return found[0]


def _payload_until(client: TestClient, topic: str, payload: bytes, *, retained: bool | None = None) -> None:
    def probe() -> bool:
        message = client.expect(LINK_DEADLINE_S)
        return message.topic == topic and message.payload == payload and (
            retained is None or message.retain == retained)

    wait_until(probe, timeout=LINK_DEADLINE_S, what=f"{payload!r} on {topic}")


def _retained(client_factory: Callable[[], TestClient], topic: str) -> bytes:
    """What the broker holds retained on ``topic`` now (a fresh subscription's first message)."""
    with client_factory() as client:
        client.subscribe(topic)
        message = client.expect(LINK_DEADLINE_S)
        assert message.retain, f"{topic}: {message}"
        return bytes(message.payload)


def _link_state(node: NativeNode, op: Op) -> None:
    with node.edge_client() as client:
        client.subscribe(topics.cloud_link())
        _envelope_until(client, topics.cloud_link(), lambda e: e.op == op)


@pytest.fixture(params=["mosquitto", "amqtt"])
def native_node(request: pytest.FixtureRequest, edgehive_broker: BrokerFactory,
                tmp_path: Path) -> Iterator[NativeNode]:
    cloud = edgehive_broker(request.param, users=USERS)
    proxy = CuttableProxy(cloud.host, cloud.port)
    lines = bridge_sections(NODE, (BrokerUrl("127.0.0.1", proxy.port, username=NODE, password=USERS[NODE]),))
    edge_port, metrics_port = free_port(), free_port()
    argv = broker_argv("mosquitto", BrokerSettings(listen=(f"127.0.0.1:{edge_port}",)), tmp_path / "edge", lines)
    edge_broker = ManagedProcess("edge-mosquitto", argv, tmp_path / "edge-mosquitto.log").start()
    edgehub: ManagedProcess | None = None
    try:
        wait_until(lambda: mqtt_ready("127.0.0.1", edge_port, None, None), timeout=20, what="the edge mosquitto",
                   interval=0.1, alive=edge_broker)
        edgehub = ManagedProcess("edgehub", [
            sys.executable, "-m", "edge.edgehub", "--node", NODE, "--broker", f"mqtt://127.0.0.1:{edge_port}",
            "--outbox", str(tmp_path / "outbox.db"), "--keepalive-s", "3", "--resend-s", "3", "--bridge", "native",
            "--log-level", "info", "--metrics-listen", f"127.0.0.1:{metrics_port}"], tmp_path / "edgehub.log").start()
        with TestClient("127.0.0.1", edge_port) as watcher:
            watcher.subscribe(topics.status("edgehub"))
            wait_until(lambda: decode(watcher.expect().payload).body.get("pid") == edgehub.pid, timeout=30,
                       what="edgehub up", alive=edgehub)
        yield NativeNode(cloud, proxy, "127.0.0.1", edge_port, edge_broker, edgehub, metrics_port)
    finally:
        if edgehub is not None:
            edgehub.stop()
        edge_broker.stop()
        proxy.close()


def test_edgehub_follows_the_native_link_and_traffic_crosses_both_ways(native_node: NativeNode) -> None:
    node = native_node
    _link_state(node, Op.CONNECTED)
    assert _retained(node.edge_client, topics.link_hello(NODE)) == topics.NATIVE_UP
    assert _retained(node.cloud_client, topics.link_hello(NODE)) == topics.NATIVE_UP

    with node.cloud_client() as cloud, node.edge_client() as edge:
        cloud.subscribe(topics.link_up(NODE))
        cloud.subscribe(topics.stream(NODE, topics.Direction.UP))
        edge.subscribe(topics.link_down(NODE))
        edge.subscribe(topics.from_cloud("metamanager"))
        edge.subscribe(topics.stream(NODE, topics.Direction.DOWN))
        # Up: EdgeHub's keepalive (its own send) and an outbox entry a module handed it.
        _envelope_until(cloud, topics.link_up(NODE), lambda e: e.src == "edgehub" and e.op == Op.KEEPALIVE)
        status = Envelope(node=NODE, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                          res=ResourceKey("default", "podstatus", "p"), body={"status": {"phase": "Running"}})
        edge.publish(topics.to_cloud(), status.encode())
        _envelope_until(cloud, topics.link_up(NODE), lambda e: e.id == status.id)
        # Down: through the bridge to the edge broker, and on through EdgeHub to the module that owns it.
        update = Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.UPDATE,
                          res=ResourceKey("default", "configmap", "c"), body={"data": {}})
        cloud.publish(topics.link_down(NODE), update.encode())
        _envelope_until(edge, topics.link_down(NODE), lambda e: e.id == update.id)
        _envelope_until(edge, topics.from_cloud("metamanager"), lambda e: e.id == update.id)
        # The stream connection, both ways, as opaque bytes.
        cloud.publish(topics.stream(NODE, topics.Direction.DOWN), b"frame-down")
        _payload_until(edge, topics.stream(NODE, topics.Direction.DOWN), b"frame-down")
        edge.publish(topics.stream(NODE, topics.Direction.UP), b"frame-up")
        _payload_until(cloud, topics.stream(NODE, topics.Direction.UP), b"frame-up")

    with node.edge_client() as edge:  # EdgeHub's hello repeat, 10 s after the link came up
        edge.subscribe(topics.hello_repeat())
        _payload_until(edge, topics.hello_repeat(), topics.NATIVE_UP)


def test_a_cut_says_disconnected_and_leaves_the_will_then_the_heal_connects_again(native_node: NativeNode) -> None:
    node = native_node
    _link_state(node, Op.CONNECTED)
    with node.cloud_client() as cloud, node.edge_client() as edge:
        cloud.subscribe(topics.link_hello(NODE))
        _payload_until(cloud, topics.link_hello(NODE), topics.NATIVE_UP, retained=True)
        edge.subscribe(topics.cloud_link())
        _envelope_until(edge, topics.cloud_link(), lambda e: e.op == Op.CONNECTED)

        link_up = f'edgehive_link_up{{node="{NODE}"}}'
        assert value(node.metrics_port, link_up) == 1
        drops = f'edgehive_events_total{{component="edgehub",event="link_drops",node="{NODE}"}}'
        connects = f'edgehive_events_total{{component="edgehub",event="link_connects",node="{NODE}"}}'
        assert value(node.metrics_port, drops) == -1  # never counted yet: no sample
        assert value(node.metrics_port, connects) == 1

        node.proxy.cut()
        _envelope_until(edge, topics.cloud_link(), lambda e: e.op == Op.DISCONNECTED)
        _payload_until(cloud, topics.link_hello(NODE), topics.NATIVE_DOWN)  # the bridge's will
        assert value(node.metrics_port, link_up) == 0
        assert value(node.metrics_port, drops) == 1
    assert _retained(node.cloud_client, topics.link_hello(NODE)) == topics.NATIVE_DOWN
    assert _retained(node.edge_client, topics.link_hello(NODE)) == topics.NATIVE_DOWN

    with node.edge_client() as edge:
        edge.subscribe(topics.cloud_link())
        _envelope_until(edge, topics.cloud_link(), lambda e: e.op == Op.DISCONNECTED)
        node.proxy.heal()
        _envelope_until(edge, topics.cloud_link(), lambda e: e.op == Op.CONNECTED)
    assert _retained(node.cloud_client, topics.link_hello(NODE)) == topics.NATIVE_UP
    assert value(node.metrics_port, link_up) == 1
    assert value(node.metrics_port, connects) == 2
    assert node.edgehub.returncode() is None
    assert node.edge_broker.returncode() is None
