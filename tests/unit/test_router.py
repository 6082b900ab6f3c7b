"""The router's logic without a network: rules resolved or refused, uploads and calls matched, the bounded
retried queue and the Rule status it keeps."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from cloud.router.restin import Refused, check_body, parse_target
from cloud.router.restout import Delivery, RestSender
from cloud.router.status import MAX_ERRORS, StatusBook
from cloud.router.table import Route, RuleTable
from edge.eventbus.door import EventBus, EventBusSettings
from runtime.backoff import Backoff
from runtime.counters import Counters
from schemas import kinds, topics
from schemas.envelope import Envelope, Group, Op, RawSend, Send
from schemas.fields import BodyError
from schemas.resource import ResourceKey
from schemas.rules import BusMessage, Rule, RuleEndpoint, RuleStatus

NS = "default"


def endpoint(name: str, kind: str) -> RuleEndpoint:
    return RuleEndpoint.view({"metadata": {"name": name, "namespace": NS}, "spec": {"ruleEndpointType": kind}})


def rule(name: str, source: str, source_resource: dict[str, str], target: str,
         target_resource: dict[str, str], status: dict[str, Any] | None = None) -> Rule:
    return Rule.view({"metadata": {"name": name, "namespace": NS},
                      "spec": {"source": source, "sourceResource": source_resource, "target": target,
                               "targetResource": target_resource}, "status": status or {}})


def table() -> RuleTable:
    found = RuleTable()
    for name, kind in (("my-rest", "rest"), ("my-eventbus", "eventbus"), ("my-servicebus", "servicebus")):
        found.set_endpoint(endpoint(name, kind), True)
    return found


def test_eventbus_to_rest_takes_only_its_nodes_topic() -> None:
    rules = table()
    rules.set_rule(rule("up", "my-eventbus", {"topic": "test", "node_name": "edge-1"}, "my-rest",
                        {"resource": "http://127.0.0.1:8080/in"}), True)
    (route,) = rules.for_upload("edge-1", "default/test")
    assert route.url == "http://127.0.0.1:8080/in"
    assert route.rule == (NS, "up")
    assert rules.for_upload("edge-1", "test") == [route]
    assert rules.for_upload("edge-2", "default/test") == []  # another node's upload on the same topic
    assert rules.for_upload("edge-1", "default/other") == []
    assert rules.refusals() == {}


def test_rest_to_eventbus_longest_path_and_remainder() -> None:
    rules = table()
    rules.set_rule(rule("a", "my-rest", {"path": "/a"}, "my-eventbus", {"topic": "t/a"}), True)
    rules.set_rule(rule("ab", "my-rest", {"path": "/a/b/"}, "my-eventbus", {"topic": "t/ab"}), True)
    found = rules.for_call(NS, "a/b/c")
    assert found is not None
    assert found[0].rule == (NS, "ab")
    assert found[1] == "c"
    found = rules.for_call(NS, "a/x")
    assert found is not None
    assert found[0].rule == (NS, "a")
    assert found[1] == "x"
    assert rules.for_call(NS, "ax") is None
    assert rules.for_call("other", "a") is None


@pytest.mark.parametrize(("source", "sres", "target", "tres", "reason"), [
    ("my-rest", {"path": "/p"}, "my-servicebus", {"path": "/x"}, "servicebus"),
    ("nope", {"path": "/p"}, "my-eventbus", {"topic": "t"}, "source RuleEndpoint default/nope does not exist"),
    ("my-eventbus", {"topic": "t"}, "my-rest", {"resource": "http://h/"}, '"node_name"'),
    ("my-eventbus", {"topic": "t/#", "node_name": "n"}, "my-rest", {"resource": "http://h/"}, "wildcard"),
    ("my-eventbus", {"topic": "t", "node_name": "n"}, "my-rest", {"resource": "ftp://h/"}, "http(s) URL"),
    ("my-rest", {"path": "/p"}, "my-rest", {"resource": "http://h/"}, "from rest to rest is not supported"),
    ("my-rest", {}, "my-eventbus", {"topic": "t"}, '"path"'),
])
def test_refused_rules_say_why(source: str, sres: dict[str, str], target: str, tres: dict[str, str],
                               reason: str) -> None:
    rules = table()
    rules.set_rule(rule("r", source, sres, target, tres), True)
    refusals = rules.refusals()
    assert reason in refusals[(NS, "r")]
    assert rules.for_call(NS, "p") is None


def test_rule_resolves_once_its_endpoint_arrives_and_leaves_with_it() -> None:
    rules = RuleTable()
    rules.set_rule(rule("r", "my-rest", {"path": "p"}, "my-eventbus", {"topic": "t"}), True)
    assert (NS, "r") in rules.refusals()
    rules.set_endpoint(endpoint("my-rest", "rest"), True)
    rules.set_endpoint(endpoint("my-eventbus", "eventbus"), True)
    assert rules.refusals() == {}
    rules.set_endpoint(endpoint("my-eventbus", "eventbus"), False)
    assert "target RuleEndpoint" in rules.refusals()[(NS, "r")]


def test_status_counts_start_from_the_rule_and_keep_the_latest_errors() -> None:
    writes: list[tuple[Any, dict[str, Any]]] = []
    book = StatusBook(lambda key, patch: writes.append((key, patch)))
    key = (NS, "r")
    book.seen(key, RuleStatus(5, 1, ("old",)))
    book.success(key)
    for i in range(MAX_ERRORS + 2):
        book.fail(key, f"e{i}")
    book.refused(key, "why")
    book.refused(key, "why")  # the same refusal again: not repeated
    assert book.flush() == 1
    assert book.flush() == 0
    status = writes[0][1]["status"]
    assert status["successMessages"] == 6
    assert status["failMessages"] == 1 + MAX_ERRORS + 2
    assert status["errors"][-1] == "why"
    assert len(status["errors"]) == MAX_ERRORS


def test_a_failed_status_write_is_tried_again() -> None:
    calls: list[int] = []

    def write(_key: Any, _patch: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("API server away")

    book = StatusBook(write)
    book.seen((NS, "r"), RuleStatus())
    book.success((NS, "r"))
    assert book.flush() == 0
    assert book.flush() == 1


def sender(book: StatusBook, answers: list[str | None], **kw: Any) -> tuple[RestSender, list[Delivery]]:
    posted: list[Delivery] = []

    def post(delivery: Delivery, _timeout: float) -> str | None:
        posted.append(delivery)
        return answers.pop(0) if answers else None

    return RestSender(book, post=post, backoff=lambda: Backoff(0.0, 0.0, jitter=0.0), **kw), posted


def test_sender_retries_then_counts_success_or_failure() -> None:
    book = StatusBook(lambda _k, _p: None)
    book.seen((NS, "r"), RuleStatus())
    out, posted = sender(book, ["answered 500", "answered 500"], attempts=3)
    out._deliver(Delivery((NS, "r"), "http://h", "edge-1", b"x"))
    assert len(posted) == 3
    assert book.status((NS, "r")) == RuleStatus(1, 0, ())
    out, posted = sender(book, ["answered 500"] * 3, attempts=3)
    out._deliver(Delivery((NS, "r"), "http://h", "edge-1", b"y"))
    status = book.status((NS, "r"))
    assert status is not None
    assert status.fail == 1
    assert "gave up after 3 attempts: answered 500" in status.errors[-1]


def test_queue_past_its_bound_drops_the_oldest_and_says_so() -> None:
    book = StatusBook(lambda _k, _p: None)
    book.seen((NS, "r"), RuleStatus())
    out, _posted = sender(book, [], bound=2)  # not started: everything waits
    for i in range(3):
        out.put(Delivery((NS, "r"), "http://h", "edge-1", str(i).encode()))
    assert len(out) == 2
    assert out.dropped == 1
    status = book.status((NS, "r"))
    assert status is not None
    assert status.fail == 1
    assert "queue of 2 messages was full" in status.errors[0]


def test_sender_thread_delivers_in_order() -> None:
    book = StatusBook(lambda _k, _p: None)
    book.seen((NS, "r"), RuleStatus())
    done = threading.Event()
    seen: list[bytes] = []

    def post(delivery: Delivery, _timeout: float) -> str | None:
        seen.append(delivery.payload)
        if len(seen) == 3:
            done.set()
        return None

    out = RestSender(book, post=post)
    out.start()
    try:
        for i in range(3):
            out.put(Delivery((NS, "r"), "http://h", "edge-1", str(i).encode()))
        assert done.wait(5)
    finally:
        out.close()
    assert seen == [b"0", b"1", b"2"]


def test_call_paths_and_bodies() -> None:
    assert parse_target("/edge-1/default/a/b?x=1") == ("edge-1", "default", "a/b")
    for bad in ("/edge-1/default", "/Edge_1/default/a", "/edge-1/NS/a", "/"):
        with pytest.raises(Refused):
            parse_target(bad)
    check_body(b'{"a": 1}', "application/json; charset=utf-8")
    check_body(b"not json", "text/plain")
    for body, kind in ((b"", "text/plain"), (b"{oops", "application/json")):
        with pytest.raises(Refused) as refused:
            check_body(body, kind)
        assert refused.value.status == 400


def test_bus_message_parse() -> None:
    assert BusMessage.parse({"topic": "a/b", "payload": b"x"}) == BusMessage("a/b", b"x")
    assert not BusMessage("a/#", b"").publishable
    for body in ({"topic": "", "payload": b""}, {"topic": "a", "payload": "text"}, {"payload": b""}, [1]):
        with pytest.raises(BodyError):
            BusMessage.parse(body)


def test_route_remainder() -> None:
    route = Route((NS, "r"), "rest", path="a")
    assert route.remainder("a") == ""
    assert route.remainder("a/b/c") == "b/c"
    assert route.remainder("ab") is None


class QuietBus:
    """What EventBus's cloud handler needs of a bus: a name and counters (it publishes nothing itself)."""

    inbox = topics.inbox(topics.Side.EDGE, "eventbus")

    def __init__(self) -> None:
        self.counters = Counters()


def test_node_eventbus_publishes_what_the_router_sends_and_acknowledges_it() -> None:
    door = EventBus(EventBusSettings(node="edge-1"), QuietBus())  # type: ignore[arg-type]
    sent = Envelope(node="edge-1", src="router", group=Group.USER, op=Op.INSERT,
                    res=ResourceKey(NS, kinds.BUSMESSAGE, "m1"), body={"topic": "cmd/in", "payload": b"on"})
    raw, ack = list(door.on_cloud(sent, "") or [])
    assert raw == RawSend("cmd/in", b"on")
    assert isinstance(ack, Send)
    assert ack.topic == topics.to_cloud()
    assert (ack.envelope.op, ack.envelope.parent) == (Op.RESPONSE, sent.id)
    for body in ({"topic": "cmd/#", "payload": b"on"}, {"topic": "cmd", "payload": "text"}):
        (refusal,) = list(door.on_cloud(replace(sent, body=body), "") or [])
        assert isinstance(refusal, Send)
        assert (refusal.envelope.op, refusal.envelope.parent) == (Op.ERROR, sent.id)
