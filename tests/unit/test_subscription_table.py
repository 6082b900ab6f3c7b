"""The embedded broker's subscription table remembers which filters match a topic, and forgets it whenever a
filter comes or goes: a stale answer would deliver to a filter unsubscribed, or miss one just subscribed."""

from __future__ import annotations

import logging

from amqtt.broker import Broker

from broker.embedded import MATCHES_KEPT, _SubscriptionTable


class _Matcher:
    """amqtt's own matching rule, counting its calls (to see when the table asks it again)."""

    def __init__(self) -> None:
        self.calls = 0
        self.logger = logging.getLogger("test-subscription-table")

    def __call__(self, topic: str, a_filter: str) -> bool:
        self.calls += 1
        return bool(Broker._matches(self, topic, a_filter))


DEVICE = "$hw/events/device/ns/dev-1/twin/update"


def test_matching_filters_follow_every_change() -> None:
    table = _SubscriptionTable()
    matches = _Matcher()
    table["$hw/events/device/+/+/twin/update"] = []
    table["edgehive/edge/eventbus"] = []
    table["#"] = []  # never a $ topic [MQTT-4.7.2-1]
    assert table.matching(DEVICE, matches) == ("$hw/events/device/+/+/twin/update",)
    asked = matches.calls
    assert table.matching(DEVICE, matches) == ("$hw/events/device/+/+/twin/update",)
    assert matches.calls == asked  # remembered, not matched again

    table[DEVICE] = []
    assert set(table.matching(DEVICE, matches)) == {"$hw/events/device/+/+/twin/update", DEVICE}
    del table["$hw/events/device/+/+/twin/update"]
    assert table.matching(DEVICE, matches) == (DEVICE,)
    table.pop(DEVICE)
    assert table.matching(DEVICE, matches) == ()
    table.setdefault("$hw/events/device/ns/#", [])
    assert table.matching(DEVICE, matches) == ("$hw/events/device/ns/#",)
    table.update({"$hw/events/device/ns/+/twin/#": []})
    assert set(table.matching(DEVICE, matches)) == {"$hw/events/device/ns/#", "$hw/events/device/ns/+/twin/#"}
    table.clear()
    assert table.matching(DEVICE, matches) == ()


def test_sessions_added_to_a_filter_need_no_new_match() -> None:
    """Only the filters are remembered; their subscribers are read from the table at each delivery."""
    table = _SubscriptionTable()
    matches = _Matcher()
    table["a/+"] = []
    assert table.matching("a/b", matches) == ("a/+",)
    table["a/+"].append(("session", 1))
    assert table.matching("a/b", matches) == ("a/+",)
    assert table["a/+"] == [("session", 1)]


def test_topics_remembered_are_bounded() -> None:
    table = _SubscriptionTable()
    matches = _Matcher()
    table["t/+"] = []
    for i in range(MATCHES_KEPT + 10):
        assert table.matching(f"t/{i}", matches) == ("t/+",)
    assert len(table._matching) <= MATCHES_KEPT
