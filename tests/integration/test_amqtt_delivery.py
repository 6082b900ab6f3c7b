"""The embedded amqtt broker delivers by the filters that match a topic, remembered per topic: deliveries
follow subscriptions that come and go after a topic was first delivered, and a "#" filter still gets no $
topic [MQTT-4.7.2-1]."""

from __future__ import annotations

from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient

TOPIC = "$hw/events/device/ns/dev-1/twin/update"
WILDCARD = "$hw/events/device/+/+/twin/update"


def _client(broker: Broker) -> TestClient:
    return TestClient(broker.host, broker.port)


def test_deliveries_follow_subscriptions_after_a_topic_was_delivered(edgehive_broker: BrokerFactory) -> None:
    broker = edgehive_broker("amqtt")
    with _client(broker) as pub, _client(broker) as every, _client(broker) as exact:
        every.subscribe("#")
        first = _client(broker).connect()
        first.subscribe(WILDCARD)
        pub.publish(TOPIC, b"m1")
        assert first.expect().payload == b"m1"

        exact.subscribe(TOPIC)  # a filter added after the topic's filters were first looked up
        pub.publish(TOPIC, b"m2")
        assert first.expect().payload == b"m2"
        assert exact.expect().payload == b"m2"

        first.close()  # its filter goes with its session
        second = _client(broker).connect()
        try:
            second.subscribe(WILDCARD)  # and comes back, for another client
            pub.publish(TOPIC, b"m3")
            assert exact.expect().payload == b"m3"
            assert second.expect().payload == b"m3"
        finally:
            second.close()

        pub.publish("fence/x", b"fence")
        assert every.expect().topic == "fence/x"  # none of the $hw messages before it
        assert first.messages.empty()
        assert exact.messages.empty()
