"""A component that takes batches on a topic (``Bus.handle(..., batches=True)``) handles their members one by one,
in order, as if each had come alone; a bad batch is refused whole; elsewhere a batch is just an envelope.
MetaManager's forwards to EdgeD and DeviceTwin go this way (edge/metamanager/component.py's BATCH_TAKERS); their
components take batches on their inboxes, which tests/integration/test_end_to_end.py runs on the real parts."""

from __future__ import annotations

import pytest

from runtime.bus import Bus, BusSettings
from runtime.connsettings import ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics
from schemas.batch import pack
from schemas.envelope import Envelope, Group, Op, RawSend, Send
from schemas.resource import ResourceKey

NODE = "edge-1"
EDGED = topics.inbox(topics.Side.EDGE, "edged")
OTHER = topics.status("metamanager")


def cm(name: str) -> Envelope:
    return Envelope(node=NODE, src="metamanager", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("default", "configmap", name), rv="1", body={"metadata": {"name": name}})


class Recorded:
    def __init__(self) -> None:
        self.handled: list[tuple[str, Envelope]] = []
        self.acks = 0
        self.published: list[tuple[str, bytes]] = []


@pytest.fixture
def bus() -> tuple[Bus, Recorded]:
    record = Recorded()
    bus = Bus(BusSettings(ConnectionSettings(BrokerUrl.parse("mqtt://127.0.0.1:1"), "edged"), "edged",
                          topics.Side.EDGE, NODE))
    bus.publish = lambda topic, envelope, **_: record.published.append((topic, envelope.encode()))  # type: ignore

    def handler(envelope: Envelope, topic: str) -> list[Send | RawSend]:
        record.handled.append((topic, envelope))
        return []

    bus.handle(bus.inbox, handler, batches=True)
    bus.handle(OTHER, handler, subscribe=False)
    return bus, record


def deliver(bus: Bus, record: Recorded, topic: str, payload: bytes) -> None:
    """The network thread's part, then the handler thread's, on this thread."""

    def ack() -> None:
        record.acks += 1

    bus._on_incoming(Incoming(topic, payload, 1, False, False, ack))
    bus._work.put(None)
    bus._work_loop()


def batch(*members: Envelope) -> bytes:
    (item,) = pack(NODE, "metamanager", members, max_members=100, max_bytes=64 * 1024)
    return item.payload


def test_the_members_of_a_batch_are_handled_in_order_and_the_message_acknowledged_once(
        bus: tuple[Bus, Recorded]) -> None:
    b, record = bus
    members = [cm(f"c{i}") for i in range(5)]
    deliver(b, record, EDGED, batch(*members))
    assert [e.id for _, e in record.handled] == [m.id for m in members]
    assert {t for t, _ in record.handled} == {EDGED}
    assert record.acks == 1
    assert b.counters.get("batches_received") == 1


def test_a_batch_with_a_bad_member_is_refused_whole_and_nothing_handled(bus: tuple[Bus, Recorded]) -> None:
    b, record = bus
    stranger = Envelope(node="edge-2", src="metamanager", group=Group.RESOURCE, op=Op.UPDATE,
                        res=ResourceKey("default", "configmap", "x"), rv="1", body={})
    carrier = Envelope(node=NODE, src="metamanager", group=Group.HUB, op=Op.BATCH,
                       body={"groups": ["resource", "resource"], "members": [cm("a").encode(), stranger.encode()]})
    deliver(b, record, EDGED, carrier.encode())
    assert record.handled == []
    assert record.acks == 1
    assert b.counters.get("invalid") == 1
    (topic, reply), = record.published
    assert topic == topics.inbox(topics.Side.EDGE, "metamanager")  # the sender hears why
    assert b"body.members[1]" in reply


def test_on_a_topic_without_batches_a_batch_is_one_envelope(bus: tuple[Bus, Recorded]) -> None:
    b, record = bus
    deliver(b, record, OTHER, batch(cm("a"), cm("b")))
    ((_, envelope),) = record.handled
    assert envelope.op == Op.BATCH



def test_a_filter_added_after_a_topic_was_routed_takes_its_next_messages(bus: tuple[Bus, Recorded]) -> None:
    """Routes are worked out once per topic and kept; adding a handler must not leave a kept route stale."""
    b, record = bus
    late = topics.status("edgehub")
    deliver(b, record, late, cm("a").encode())
    assert record.handled == []  # no handler yet: counted unhandled

    seen: list[str] = []

    def see(envelope: Envelope, _topic: str) -> None:
        seen.append(envelope.res.name if envelope.res else "")

    b.handle(topics.status("edgehub").rsplit("/", 1)[0] + "/+", see, subscribe=False)
    deliver(b, record, late, cm("b").encode())
    deliver(b, record, OTHER, cm("c").encode())
    assert seen == ["b", "c"]
    assert [e.res.name for _, e in record.handled if e.res] == ["c"]  # OTHER's own handler, still there
