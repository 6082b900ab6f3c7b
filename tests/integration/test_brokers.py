"""The broker fixtures give real brokers: QoS 1 both ways, and ACLs that refuse."""

from __future__ import annotations

import pytest

from tests.fixtures.brokers import Acl, Broker, BrokerFactory
from tests.fixtures.mqtt import MqttError, TestClient

BROKERS = ["amqtt_broker", "mosquitto_broker"]


def client(broker: Broker, user: str | None = None, password: str | None = None) -> TestClient:
    return TestClient(broker.host, broker.port, username=user, password=password)


@pytest.mark.parametrize("factory_name", BROKERS)
def test_qos1_roundtrip(factory_name: str, request: pytest.FixtureRequest) -> None:
    factory: BrokerFactory = request.getfixturevalue(factory_name)
    broker = factory()
    with client(broker) as sub, client(broker) as pub:
        assert sub.subscribe("edgehive/test/+", qos=1) == 1
        for i in range(20):
            pub.publish(f"edgehive/test/{i % 3}", f"m{i}".encode(), qos=1)
        got = [sub.expect() for _ in range(20)]
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)]
    assert {m.qos for m in got} == {1}
    assert got[4].topic == "edgehive/test/1"


@pytest.mark.parametrize("factory_name", BROKERS)
def test_two_brokers_are_independent(factory_name: str, request: pytest.FixtureRequest) -> None:
    factory: BrokerFactory = request.getfixturevalue(factory_name)
    cloud, edge = factory(), factory()
    assert cloud.port != edge.port
    with client(cloud) as cloud_sub, client(cloud) as cloud_pub, client(edge) as edge_sub, \
            client(edge) as edge_pub:
        cloud_sub.subscribe("t/#")
        edge_sub.subscribe("t/#")
        edge_pub.publish("t/x", b"edge-only")
        assert edge_sub.expect().payload == b"edge-only"
        # Had the two shared a broker, "edge-only" would have been routed to
        # cloud_sub in the same pass that reached edge_sub, so before this fence.
        cloud_pub.publish("t/fence", b"fence")
        assert cloud_sub.expect().payload == b"fence"


USERS = {"node-a": "secret-a", "cloud": "secret-c"}
ACL = {
    "node-a": Acl(publish=("edgehive/link/node-a/up",), subscribe=("edgehive/link/node-a/down",)),
    "cloud": Acl(publish=("edgehive/link/+/down",), subscribe=("edgehive/link/#",)),
}


@pytest.mark.parametrize("factory_name", BROKERS)
def test_acl_refuses_other_topics(factory_name: str, request: pytest.FixtureRequest) -> None:
    factory: BrokerFactory = request.getfixturevalue(factory_name)
    broker = factory(users=USERS, acl=ACL)

    with pytest.raises(MqttError, match="refused the connection"):
        client(broker, "node-a", "wrong").connect()

    with client(broker, "cloud", "secret-c") as cloud, client(broker, "node-a", "secret-a") as node:
        # amqtt refuses the subscription in its SUBACK; mosquitto 2.0 grants it to
        # MQTT 3.1.1 clients and filters at delivery. Either way nothing may arrive.
        refusal = ""
        try:
            node.subscribe("edgehive/link/node-b/down")
        except MqttError as exc:
            refusal = str(exc)
        assert refusal == "" or "refused the subscription" in refusal
        assert node.subscribe("edgehive/link/node-a/down") == 1
        cloud.subscribe("edgehive/link/#")

        # A forbidden publish is accepted on the wire but never delivered. The
        # allowed message after it on the same connection is the fence: once it
        # arrives, the forbidden one would have arrived before it.
        node.publish("edgehive/link/node-b/up", b"forged")
        node.publish("edgehive/link/node-a/up", b"fence")
        first = cloud.expect()
        assert (first.topic, first.payload) == ("edgehive/link/node-a/up", b"fence")

        cloud.publish("edgehive/link/node-b/down", b"for-b")
        cloud.publish("edgehive/link/node-a/down", b"for-a")
        first = node.expect()
        assert (first.topic, first.payload) == ("edgehive/link/node-a/down", b"for-a")
