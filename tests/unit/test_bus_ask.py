"""Requests asked together (``Bus.ask``) each get their own answer, wait out their own deadline from when they
were asked, and leave nothing behind when given up on; ``listings`` asks the first page of every kind before it
waits for any (a controller's resync of a node: one round trip for five kinds, not five)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.metamanager.manager import MetaManager
from edge.metamanager.store import MetaStore
from runtime.bus import Bus, BusSettings, RequestTimeout
from runtime.connsettings import ConnectionSettings, Incoming
from runtime.listing import listings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.link import PageQuery
from schemas.resource import ResourceKey

NODE = "edge-1"
HUB = "edgehive/cloud/cloudhub"


def idle_bus(published: list[Envelope]) -> Bus:
    """A real Bus, never connected, whose publishes are recorded instead of sent."""
    bus = Bus(BusSettings(ConnectionSettings(BrokerUrl.parse("mqtt://127.0.0.1:1"), "edgecontroller"),
                          "edgecontroller", topics.Side.CLOUD, NODE))
    bus.publish = lambda _topic, envelope, **_: published.append(envelope)  # type: ignore[method-assign]
    return bus


def arrive(bus: Bus, envelope: Envelope) -> None:
    """An answer, as the network thread hands it over."""
    bus._on_incoming(Incoming(bus.inbox, envelope.encode(), 1, False, False, lambda: None))


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


def cm(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}, "data": {}}


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[MetaManager]:
    store = MetaStore(tmp_path / "meta.db")
    manager = MetaManager(store, NODE)
    for i in range(5):
        manager.on_cloud(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                                  res=ResourceKey("default", "configmap", f"c{i}"), rv=str(10 + i), body=cm(f"c{i}")))
    manager.on_cloud(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                              res=ResourceKey("default", "secret", "s0"), rv="20", body=cm("s0")))
    yield manager
    store.close()


def test_listings_ask_every_kinds_first_page_before_waiting_then_page_on(manager: MetaManager) -> None:
    """MetaManager's real answers; each is delivered only when the listing reads it, so the order of sends and
    reads is the listing's own."""
    published: list[Envelope] = []
    events: list[str] = []
    bus = idle_bus(published)
    real_ask = bus.ask

    def ask(topic: str, envelope: Envelope, timeout: float = 10.0) -> Any:
        asked = real_ask(topic, envelope, timeout)
        page = PageQuery.parse(envelope.body)
        events.append(f"ask {page.kind} {page.after}".rstrip())
        real_answer = asked.answer

        def answer() -> Envelope:
            events.append(f"read {page.kind} {page.after}".rstrip())
            arrive(bus, manager.on_cloud(envelope)[0].envelope)
            return real_answer()

        asked.answer = answer  # type: ignore[method-assign]
        return asked

    bus.ask = ask  # type: ignore[method-assign]
    items = list(listings(bus, HUB, ["pod", "configmap", "secret"], limit=2, timeout=5, node=NODE))
    assert [item.key.name for item in items] == ["c0", "c1", "c2", "c3", "c4", "s0"]
    assert events == ["ask pod", "ask configmap", "ask secret", "read pod", "read configmap",
                      "ask configmap default/configmap/c1", "read configmap default/configmap/c1",
                      "ask configmap default/configmap/c3", "read configmap default/configmap/c3", "read secret"]
    assert not bus._waiters


def test_a_listing_given_up_on_forgets_the_answers_it_never_read() -> None:
    published: list[Envelope] = []
    bus = idle_bus(published)
    with pytest.raises(RequestTimeout):
        list(listings(bus, HUB, ["pod", "configmap"], limit=10, timeout=0.1, node=NODE))
    assert len(published) == 2
    assert not bus._waiters, "the configmap page, never read, is no longer waited for"
