"""Requests asked together (``Bus.ask``) each get their own answer, wait out their own deadline from when they
were asked, and leave nothing behind when given up on (``listings``, which asks this way, is tested in
test_listing.py)."""

from __future__ import annotations

import threading
import time

import pytest

from runtime.bus import Bus, RequestTimeout
from schemas.envelope import Envelope, Group, Op
from schemas.link import PageQuery
from tests.fixtures.processes import wait_until
from tests.unit.test_listing import HUB, arrive, idle_bus

NODE = "edge-1"


def query(bus: Bus, kind: str) -> Envelope:
    return bus.envelope(Group.META, Op.QUERY, body=PageQuery(kind, "", 10).as_body(), node=NODE)


def test_requests_asked_together_get_their_own_answers_in_any_order() -> None:
    published: list[Envelope] = []
    bus = idle_bus(published)
    first, second = bus.ask(HUB, query(bus, "pod"), timeout=5), bus.ask(HUB, query(bus, "configmap"), timeout=5)
    assert [PageQuery.parse(e.body).kind for e in published] == ["pod", "configmap"], "both sent before any answer"
    arrive(bus, published[1].reply("metamanager", {"items": [], "next": None, "n": 2}))
    arrive(bus, published[0].reply("metamanager", {"items": [], "next": None, "n": 1}))
    assert first.answer().body["n"] == 1
    assert second.answer().body["n"] == 2
    assert not bus._waiters


def test_an_asked_request_times_out_from_when_it_was_asked_and_a_forgotten_one_leaves_no_waiter() -> None:
    published: list[Envelope] = []
    bus = idle_bus(published)
    slow = bus.ask(HUB, query(bus, "pod"), timeout=1.0)
    dropped = bus.ask(HUB, query(bus, "configmap"), timeout=1.0)
    time.sleep(1.1)  # the scenario: the answer's deadline passes before anyone reads it
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"within 1\.0 s"):
        slow.answer()
    # Read after its deadline, it fails at once instead of waiting a second more (a wide margin for this machine).
    assert time.monotonic() - started < 0.8, "the deadline counts from the ask, not from the read"
    dropped.forget()
    assert not bus._waiters
    assert bus.counters.snapshot().get("request_timeouts") == 1


def test_a_request_unanswered_after_resend_after_is_sent_again_with_its_id_and_either_answer_serves() -> None:
    published: list[Envelope] = []
    bus = idle_bus(published)
    asked = bus.ask(HUB, query(bus, "pod"), timeout=5.0, resend_after=0.2)
    answered: list[Envelope] = []
    reader = threading.Thread(target=lambda: answered.append(asked.answer()))
    reader.start()
    wait_until(lambda: len(published) == 2, timeout=5, what="the request sent again")
    assert published[0].id == published[1].id  # the same request: an answer to either copy is its answer
    arrive(bus, published[0].reply("metamanager", {"items": [], "next": None, "n": 1}))
    reader.join(timeout=5)
    assert [a.body["n"] for a in answered] == [1]
    assert bus.counters.get("request_resends") == 1
    assert not bus._waiters
    quick = bus.ask(HUB, query(bus, "configmap"), timeout=5.0, resend_after=0.2)
    arrive(bus, published[-1].reply("metamanager", {"items": [], "next": None, "n": 2}))
    assert quick.answer().body["n"] == 2
    assert len(published) == 3  # answered in time: not sent again
