"""The cloud end of the stream tunnel on a stand-in bus: which frames it accepts from which node, the cap per
node, and streams failing fast when a node's link is down (the real thing: tests/integration/test_kubectl_logs.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from cloud.stream.tunnel import Tunnel
from runtime.counters import Counters
from runtime.streamflow import StreamEnded
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.streamframe import Frame, Kind, decode

UP, DOWN = topics.Direction.UP, topics.Direction.DOWN


@dataclass
class FakeConnection:
    sent: list[tuple[str, Frame]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, **_kwargs: Any) -> None:
        self.sent.append((topic, decode(payload)))


@dataclass
class FakeBus:
    connection: FakeConnection = field(default_factory=FakeConnection)
    counters: Counters = field(default_factory=Counters)


def tunnel(cap: int = 2) -> tuple[Tunnel, FakeConnection]:
    bus = FakeBus()
    made = Tunnel(bus, max_per_node=cap, window=1000, idle_s=30)  # type: ignore[arg-type]
    made.links.update({"node-a": True, "node-b": True})
    return made, bus.connection


def test_open_sends_the_request_with_the_window_on_the_nodes_topic() -> None:
    t, connection = tunnel()
    stream = t.open("node-b", {"op": "containerLogs"})
    topic, frame = connection.sent[-1]
    assert topic == topics.stream("node-b", DOWN)
    assert (frame.kind, frame.sid, frame.credit, frame.req) == (Kind.OPEN, stream.sid, 1000, {"op": "containerLogs"})


def test_only_the_streams_node_may_answer_it() -> None:
    t, _connection = tunnel()
    stream = t.open("node-b", {})
    forged = Frame("node-a", stream.sid, Kind.DATA, seq=0, data=b"forged by a")
    t.on_frame(topics.stream("node-a", UP), forged.encode())
    disguised = Frame("node-b", stream.sid, Kind.ERROR, code=500, reason="a pretending to be b")
    t.on_frame(topics.stream("node-a", UP), disguised.encode())
    assert stream.inbox.buffered == 0
    assert stream.inbox.ended is None
    assert t.bus.counters.get("frames_for_other_nodes") == 2
    t.on_frame(topics.stream("node-b", UP), Frame("node-b", stream.sid, Kind.DATA, seq=0, data=b"b's log").encode())
    assert stream.inbox.get(1) == b"b's log"


def test_a_reader_that_is_done_tells_the_node_to_stop_and_gets_its_credit_back() -> None:
    t, connection = tunnel()
    stream = t.open("node-a", {})
    t.grant(stream, 300)
    credit = connection.sent[-1][1]
    assert (credit.kind, credit.credit) == (Kind.CREDIT, 300)
    t.finish(stream, "the API server's request ended")
    stop = connection.sent[-1][1]
    assert (stop.kind, stop.code) == (Kind.ERROR, 499)
    assert stream.sid not in t.streams
    # Data still on the way for it is answered with a stop, and goes nowhere.
    replies = t.on_frame(topics.stream("node-a", UP), Frame("node-a", stream.sid, Kind.DATA, data=b"late").encode())
    assert replies is not None
    assert [decode(r.payload).kind for r in replies] == [Kind.ERROR]


def test_past_the_cap_streams_are_refused_per_node() -> None:
    t, _connection = tunnel(cap=2)
    t.open("node-a", {})
    t.open("node-a", {})
    with pytest.raises(StreamEnded, match="node node-a has 2 streams open") as refused:
        t.open("node-a", {})
    assert refused.value.code == 429
    t.open("node-b", {})  # another node's streams are counted apart


def test_a_node_whose_link_is_down_is_refused_and_its_streams_fail() -> None:
    t, connection = tunnel()
    stream = t.open("node-a", {})
    sent_before = len(connection.sent)
    news = Envelope(node="node-a", src="cloudhub", group=Group.HUB, op=Op.DISCONNECTED,
                    body={"session": "s1", "state": "disconnected"})
    t.on_session(news, topics.node_session("node-a"))
    with pytest.raises(StreamEnded) as ended:
        stream.inbox.get(1)
    assert ended.value.code == 503
    with pytest.raises(StreamEnded, match="link to the cloud is down"):
        t.open("node-a", {})
    with pytest.raises(StreamEnded, match="not connected"):
        t.open("node-never-seen", {})
    assert len(connection.sent) == sent_before  # nothing published for a node that cannot be reached
