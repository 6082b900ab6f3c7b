"""A session announcement as CloudHub replicas and the controllers take it in (cloud/sessionnews.py): a good one
is read whole; a bad body, or an op that contradicts the state, is refused and counted, and nothing is read."""

from __future__ import annotations

import pytest

from cloud.sessionnews import read_session_news
from runtime.counters import Counters
from schemas.envelope import Envelope, Group, Op
from schemas.link import SessionNews


def announcement(op: Op, body: object) -> Envelope:
    return Envelope(node="edge-1", src="cloudhub", group=Group.HUB, op=op, body=body)


def test_a_good_announcement_is_read_whole() -> None:
    counters = Counters()
    news = SessionNews("s1", True, replica="r2", batch_bytes=65536)
    assert read_session_news(announcement(Op.CONNECTED, news.as_body()), counters) == news
    assert counters.get("refused") == 0


@pytest.mark.parametrize(("op", "body"), [
    (Op.CONNECTED, {"state": "connected"}),  # no session id
    (Op.CONNECTED, {"session": "s1"}),  # no state
    (Op.DISCONNECTED, {"session": "s1", "state": "connected"}),  # op against state
    (Op.CONNECTED, ["not", "a", "map"]),
])
def test_a_bad_announcement_is_refused_and_counted(op: Op, body: object) -> None:
    counters = Counters()
    assert read_session_news(announcement(op, body), counters) is None
    assert counters.get("refused") == 1
