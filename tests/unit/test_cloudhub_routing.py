"""CloudHub's routing without a network: envelopes and times in, sends and announcements out."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from cloud.cloudhub.routing import REPEAT_AFTER_S, CloudRouter, Routed
from runtime.counters import Counters
from runtime.queries import QUERY_MEMORY_S
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.link import SessionNews
from schemas.resource import ResourceKey

NODE = "edge-1"
UP = topics.link_up(NODE)
DOWN = topics.link_down(NODE)
CM = ResourceKey("default", "configmap", "c")
TIMEOUT = 40.0


@pytest.fixture
def router() -> CloudRouter:
    ids = count(1)
    return CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=TIMEOUT,
                       session_id=lambda: f"s{next(ids)}")


def from_node(group: Group, op: Op, *, node: str = NODE, **fields: Any) -> Envelope:
    return Envelope(node=node, src="edgehub", group=group, op=op, **fields)


def keepalive(body: object = None) -> Envelope:
    return from_node(Group.HUB, Op.KEEPALIVE, body=body)


def news(routed: Routed) -> list[tuple[str, Op, SessionNews]]:
    return [(send.topic, send.envelope.op, SessionNews.parse(send.envelope.body)) for send in routed.announce]


def connect(router: CloudRouter, now: float = 0.0) -> None:
    router.from_node(keepalive(), UP, now)


def test_upstream_goes_by_group_to_the_controller_that_owns_it(router: CloudRouter) -> None:
    status = from_node(Group.RESOURCE, Op.UPDATE, res=ResourceKey("default", "podstatus", "p"), body={})
    twin = from_node(Group.TWIN, Op.UPDATE, res=ResourceKey("default", "devicestatus", "d"), body={})
    upload = from_node(Group.USER, Op.UPLOAD, body={"topic": "t", "payload": b""})
    for envelope, module in ((status, "edgecontroller"), (twin, "devicecontroller"), (upload, "router")):
        (send,) = router.from_node(envelope, UP, 1.0).sends
        assert send.topic == topics.from_edge(module)
        assert send.envelope is envelope
    assert router.counters.get("upstream_routed") == 3


def test_the_hub_group_is_refused_unless_an_answer_or_a_keepalive(router: CloudRouter) -> None:
    connected = from_node(Group.HUB, Op.CONNECTED)
    (send,) = router.from_node(connected, UP, 1.0).sends
    assert (send.topic, send.envelope.op, send.envelope.parent, send.envelope.body["code"]) == (
        DOWN, Op.ERROR, connected.id, 400)
    assert router.counters.get("refused") == 1


def test_a_node_speaks_only_for_itself(router: CloudRouter) -> None:
    posing = from_node(Group.RESOURCE, Op.UPDATE, node="edge-2", body={})
    (send,) = router.from_node(posing, UP, 1.0).sends
    assert send.topic == DOWN
    assert send.envelope.node == NODE  # the error names the link's node, not the one claimed
    assert send.envelope.body["code"] == 403
    other_status = from_node(Group.RESOURCE, Op.UPDATE, res=ResourceKey(None, "nodestatus", "edge-2"), body={})
    assert router.from_node(other_status, UP, 1.0).sends[0].envelope.body["code"] == 403
    assert router.counters.get("wrong_node") == 2
    assert router.sessions == {}  # refused at the door: no session from it


def test_a_topic_that_names_no_node_is_dropped_and_counted(router: CloudRouter) -> None:
    assert router.from_node(keepalive(), f"{topics.LINK}/NOT_A_NODE/up", 1.0) == Routed()
    assert router.counters.get("bad_link_topic") == 1


def test_sessions_start_on_the_first_word_and_end_on_the_will_or_silence(router: CloudRouter) -> None:
    first = router.from_node(keepalive(), UP, 0.0)
    assert news(first) == [(topics.node_session(NODE), Op.CONNECTED, SessionNews("s1", True))]
    assert first.wake
    assert router.from_node(keepalive({"outbox": 7}), UP, 10.0).announce == []
    assert router.report(10.0, 1000.0)["nodes"][NODE]["outbox"] == 7
    will = from_node(Group.HUB, Op.DISCONNECTED, body={"state": "down", "reason": "link lost"})
    assert news(router.from_node(will, UP, 12.0)) == [(topics.node_session(NODE), Op.DISCONNECTED,
                                                       SessionNews("s1", False))]
    assert router.from_node(will, UP, 13.0).announce == []  # already gone
    assert news(router.from_node(keepalive(), UP, 14.0))[0][2] == SessionNews("s2", True)  # a new session
    assert router.expire(14.0 + REPEAT_AFTER_S - 1).announce == []
    # announced once more, the same session: for a controller that subscribed as the first went out
    assert news(router.expire(14.0 + REPEAT_AFTER_S)) == [(topics.node_session(NODE), Op.CONNECTED,
                                                          SessionNews("s2", True))]
    assert router.expire(14.0 + TIMEOUT).announce == []
    assert news(router.expire(14.0 + TIMEOUT + 1)) == [(topics.node_session(NODE), Op.DISCONNECTED,
                                                        SessionNews("s2", False))]
    assert router.expire(14.0 + TIMEOUT + 1 + REPEAT_AFTER_S - 1).announce == []
    assert news(router.expire(14.0 + TIMEOUT + 1 + REPEAT_AFTER_S)) == [(topics.node_session(NODE), Op.DISCONNECTED,
                                                                        SessionNews("s2", False))]
    assert router.expire(99.0).announce == []  # once
    report = router.report(100.0, 1000.0)["nodes"][NODE]
    assert report["connected"] is False
    assert report["since"] == round(1000.0 - (100.0 - (14.0 + TIMEOUT + 1)))


def test_a_bad_will_or_keepalive_body_is_refused_and_changes_nothing(router: CloudRouter) -> None:
    connect(router)
    will = from_node(Group.HUB, Op.DISCONNECTED, body={"state": "sideways"})
    routed = router.from_node(will, UP, 1.0)
    assert routed.announce == []
    assert routed.sends[0].envelope.body["code"] == 400
    assert "body.state" in routed.sends[0].envelope.body["reason"]
    assert router.sessions[NODE].connected
    routed = router.from_node(keepalive({"outbox": "many"}), UP, 2.0)
    assert "body.outbox" in routed.sends[0].envelope.body["reason"]
    assert router.sessions[NODE].outbox is None
    assert router.counters.get("refused") == 2


def test_announce_all_repeats_every_session_with_its_id(router: CloudRouter) -> None:
    connect(router)
    other = Envelope(node="edge-2", src="edgehub", group=Group.HUB, op=Op.KEEPALIVE)
    router.from_node(other, topics.link_up("edge-2"), 0.0)
    assert sorted((send.topic, SessionNews.parse(send.envelope.body).session)
                  for send in router.announce_all().announce) == [
        (topics.node_session(NODE), "s1"), (topics.node_session("edge-2"), "s2")]


def obj(rv: str, op: Op = Op.UPDATE) -> Envelope:
    return Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=op, res=CM, rv=rv,
                    body={"metadata": {"name": "c", "namespace": "default"}})


def test_objects_wait_for_the_session_and_go_until_acknowledged(router: CloudRouter) -> None:
    assert router.from_module(obj("1"), 0.0).wake
    assert router.due(0.0) == []  # not connected
    connect(router, 1.0)
    ((node, (sent,)),) = router.due(1.0)
    assert node == NODE
    router.sent(NODE, sent, 1.0)
    assert router.due(2.0) == [(NODE, [])]  # in flight, not due again yet
    assert router.due(6.5) == [(NODE, [sent])]  # resent, same id
    ack = from_node(Group.RESOURCE, Op.RESPONSE, parent=sent.id, body={"outcome": "applied"})
    routed = router.from_node(ack, UP, 7.0)
    assert routed.sends == []
    assert routed.wake
    assert router.due(7.0) == []
    assert router.counters.get("downstream_acked") == 1


def test_a_newer_version_replaces_one_not_yet_sent(router: CloudRouter) -> None:
    router.from_module(obj("5"), 0.0)
    router.from_module(obj("4"), 0.0)
    assert router.counters.get("downstream_superseded") == 1
    connect(router)
    assert [e.rv for _, envelopes in router.due(0.0) for e in envelopes] == ["5"]


def test_a_reconnected_node_gets_what_was_in_flight_at_once(router: CloudRouter) -> None:
    router.from_module(obj("1"), 0.0)
    connect(router)
    ((_, (sent,)),) = router.due(0.0)
    router.sent(NODE, sent, 0.0)
    router.from_node(from_node(Group.HUB, Op.DISCONNECTED, body={"state": "down", "reason": "x"}), UP, 1.0)
    assert router.due(1.0) == []
    connect(router, 2.0)
    assert router.due(2.0) == [(NODE, [sent])]


def test_what_was_in_flight_goes_again_at_once_when_the_broker_lost_its_store(router: CloudRouter) -> None:
    connect(router)
    router.from_module(obj("1"), 0.0)
    ((_, (sent,)),) = router.due(0.0)
    for attempt in range(4):  # resent into a link that lost it: the next resend would be 40 s away
        router.sent(NODE, sent, 100.0 * attempt)
    assert router.due(301.0) == [(NODE, [])]
    assert router.announce_all().wake
    assert router.due(301.0) == [(NODE, [sent])]


def test_an_object_needs_a_resource_key(router: CloudRouter) -> None:
    keyless = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT, body={})
    (send,) = router.from_module(keyless, 0.0).sends
    assert send.topic == topics.inbox(topics.Side.CLOUD, "edgecontroller")
    assert send.envelope.body["code"] == 400
    assert router.queues == {}


def test_a_status_query_for_the_hub_itself_is_left_to_the_runtime(router: CloudRouter) -> None:
    status = Envelope(node="cloud", src="cli", group=Group.HUB, op=Op.QUERY)
    assert router.from_module(status, 0.0) == Routed()


def test_answers_go_back_to_the_module_that_asked(router: CloudRouter) -> None:
    connect(router)
    query = Envelope(node=NODE, src="edgecontroller", group=Group.META, op=Op.QUERY, body={"list": "pod"})
    (down,) = router.from_module(query, 1.0).sends
    assert (down.topic, down.envelope) == (DOWN, query)
    answer = from_node(Group.META, Op.RESPONSE, parent=query.id, body={"items": [], "next": None})
    (back,) = router.from_node(answer, UP, 2.0).sends
    assert (back.topic, back.envelope) == (topics.inbox(topics.Side.CLOUD, "edgecontroller"), answer)
    assert router.from_node(answer, UP, 3.0).sends == []  # answered once; a second copy finds nobody
    assert router.counters.get("answers_unmatched") == 1


def test_an_answer_after_the_query_memory_expired_finds_nobody(router: CloudRouter) -> None:
    connect(router)
    query = Envelope(node=NODE, src="edgecontroller", group=Group.META, op=Op.QUERY)
    router.from_module(query, 0.0)
    late = from_node(Group.META, Op.RESPONSE, parent=query.id)
    assert router.from_node(late, UP, QUERY_MEMORY_S + 1).sends == []
    assert len(router.queries) == 0


def test_direct_ops_go_straight_down_whether_or_not_the_node_is_there(router: CloudRouter) -> None:
    answer = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.RESPONSE, parent="a1",
                      body={"ok": True})
    assert router.from_module(answer, 0.0).sends[0].topic == DOWN
    assert router.queues == {}
