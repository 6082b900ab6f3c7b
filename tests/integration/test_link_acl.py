"""Our brokers as shipped keep each node to its own link topics: amqtt, and generated mosquitto and NATS config."""

from __future__ import annotations

import pytest

from schemas import topics
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.mqtt import MqttError, TestClient

USERS = {"cloud": "cloud-pw", "node-a": "a-pw", "node-b": "b-pw"}


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto", "nats"])
def test_a_node_cannot_touch_another_nodes_topics(kind: str, edgehive_broker: BrokerFactory) -> None:
    broker = edgehive_broker(kind, users=USERS)

    def client(user: str, password: str | None = None) -> TestClient:
        return TestClient(broker.host, broker.port, username=user, password=password or USERS[user])

    for user, password in (("node-a", "wrong"), ("stranger", "x")):
        with pytest.raises(MqttError, match="refused the connection"):
            client(user, password).connect()

    with client("cloud") as cloud, client("node-a") as node_a, client("node-b") as node_b:
        check_link_fence(cloud, node_a, node_b)


def check_link_fence(cloud: TestClient, node_a: TestClient, node_b: TestClient, *,
                     more_stolen: tuple[str, ...] = ()) -> None:
    """node-a can neither read node-b's link nor speak for it; ``more_stolen``: other filters to try."""
    # node-a tries to listen to node-b's downstream traffic (refused at SUBACK or filtered at delivery)...
    for stolen in (topics.link_down("node-b"), f"{topics.LINK}/+/down", "#", *more_stolen):
        _subscribe_refused_or_filtered(node_a, stolen)
    node_a.subscribe(topics.link_down("node-a"))
    node_b.subscribe(topics.link_down("node-b"))
    cloud.subscribe(topics.all_links(topics.Direction.UP))

    cloud.publish(topics.link_down("node-b"), b"secret for b")
    cloud.publish(topics.link_down("node-a"), b"for a")
    first = node_a.expect()
    assert (first.topic, first.payload) == (topics.link_down("node-a"), b"for a")
    assert node_b.expect().payload == b"secret for b"

    # ...and to speak for node-b upstream. The fence after it arrives first.
    node_a.publish(topics.link_up("node-b"), b"forged")
    node_a.publish(topics.link_down("node-a"), b"forged down")  # not the direction a node may publish
    node_b.publish(topics.link_up("node-b"), b"b says hi")
    node_a.publish(topics.link_up("node-a"), b"fence")
    arrived = {(m.topic, m.payload) for m in (cloud.expect(), cloud.expect())}
    assert arrived == {(topics.link_up("node-a"), b"fence"), (topics.link_up("node-b"), b"b says hi")}
    assert node_a.messages.empty()  # "forged down" never reached node-a's own subscription either


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto", "nats"])
def test_retained_messages_stay_with_their_subscribers(kind: str, edgehive_broker: BrokerFactory) -> None:
    """amqtt 0.12.1 offers every connecting client the retained messages of every client's filters; ours must not."""
    broker = edgehive_broker(kind, users=USERS)
    with TestClient(broker.host, broker.port, username="cloud", password=USERS["cloud"]) as cloud:
        cloud.subscribe("edgehive/status/+")
        cloud.publish("edgehive/status/cloudhub", b"cloud-only status", retain=True)
        assert cloud.expect().payload == b"cloud-only status"
        with TestClient(broker.host, broker.port, username="node-a", password=USERS["node-a"]) as node_a:
            node_a.subscribe(topics.link_down("node-a"))
            cloud.publish(topics.link_down("node-a"), b"fence")
            first = node_a.expect()
            assert (first.topic, first.payload) == (topics.link_down("node-a"), b"fence")


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto", "nats"])
def test_a_node_cannot_read_or_answer_another_nodes_streams(kind: str, edgehive_broker: BrokerFactory) -> None:
    """Stream frames (kubectl logs, later exec) live under the node's link prefix: node-a may use its own
    stream topics and never node-b's, neither reading what the cloud sends b nor answering for b."""
    broker = edgehive_broker(kind, users=USERS)
    down, up = topics.Direction.DOWN, topics.Direction.UP

    def client(user: str) -> TestClient:
        return TestClient(broker.host, broker.port, username=user, password=USERS[user])

    with client("cloud") as cloud, client("node-a") as node_a, client("node-b") as node_b:
        for stolen in (topics.stream("node-b", down), f"{topics.LINK}/+/stream/down", f"{topics.LINK}/node-b/#"):
            _subscribe_refused_or_filtered(node_a, stolen)
        node_a.subscribe(topics.stream("node-a", down))
        node_b.subscribe(topics.stream("node-b", down))
        cloud.subscribe(topics.all_streams(up))

        cloud.publish(topics.stream("node-b", down), b"b's log request")
        cloud.publish(topics.stream("node-a", down), b"a's log request")
        first = node_a.expect()
        assert (first.topic, first.payload) == (topics.stream("node-a", down), b"a's log request")
        assert node_b.expect().payload == b"b's log request"

        node_a.publish(topics.stream("node-b", up), b"forged log lines for b")
        node_b.publish(topics.stream("node-b", up), b"b's log lines")
        node_a.publish(topics.stream("node-a", up), b"fence")
        arrived = {(m.topic, m.payload) for m in (cloud.expect(), cloud.expect())}
        assert arrived == {(topics.stream("node-a", up), b"fence"), (topics.stream("node-b", up), b"b's log lines")}
        assert node_a.messages.empty()


def _subscribe_refused_or_filtered(client: TestClient, stolen: str) -> None:
    """A subscription to another node's topics is refused at SUBACK, or accepted and then filtered at delivery
    (what the test checks next: nothing of the other node's arrives)."""
    refusal = ""
    try:
        client.subscribe(stolen)
    except MqttError as refused:
        refusal = str(refused)
    assert refusal == "" or "refused the subscription" in refusal
