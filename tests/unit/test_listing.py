"""Paging through MetaManager's store as the cloud's resync and the node's modules do, answered by the real
MetaManager logic over a real store, without a broker; a resync's ``listings`` asks the first page of every kind
before it waits for any (one round trip for a node's five kinds, not five)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.metaclient import list_objects
from edge.metamanager.manager import MetaManager
from edge.metamanager.store import MetaStore
from runtime.bus import Bus, BusSettings, RequestTimeout
from runtime.connection import ConnectionSettings
from runtime.connsettings import Incoming
from runtime.listing import listing, listings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.fields import BodyError
from schemas.link import ListedItem, PageQuery
from schemas.resource import ResourceKey

NODE = "edge-1"
HUB = "edgehive/cloud/cloudhub"


def cm(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}, "data": {}}


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[MetaManager]:
    store = MetaStore(tmp_path / "meta.db")
    manager = MetaManager(store, NODE)
    for i in range(5):
        name = f"c{i}"
        manager.on_cloud(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                                  res=ResourceKey("default", "configmap", name), rv=str(10 + i), body=cm(name)))
    yield manager
    store.close()


def idle_bus(published: list[Envelope]) -> Bus:
    """A real Bus, never connected, whose publishes are recorded instead of sent."""
    bus = Bus(BusSettings(ConnectionSettings(BrokerUrl.parse("mqtt://127.0.0.1:1"), "edgecontroller"),
                          "edgecontroller", topics.Side.CLOUD, NODE))

    def record(_topic: str, envelope: Envelope, **_: object) -> bool:
        published.append(envelope)
        return True

    bus.publish = record  # type: ignore[method-assign,assignment]
    return bus


def arrive(bus: Bus, envelope: Envelope) -> None:
    """An answer, as the network thread hands it over."""
    bus._on_incoming(Incoming(bus.inbox, envelope.encode(), 1, False, False, lambda: None))


def bus_answering(module: str, monkeypatch: pytest.MonkeyPatch, answer: Callable[[Envelope], Envelope],
                  asked: list[Envelope]) -> Bus:
    """A real Bus (never connected) whose requests ``answer`` answers."""
    bus = Bus(BusSettings(ConnectionSettings(url=BrokerUrl.parse("mqtt://127.0.0.1:1"), client_id=module),
                          module=module, side=topics.Side.EDGE, node=NODE))

    def request(_topic: str, envelope: Envelope, timeout: float = 10.0, resend_after: float | None = None) -> Envelope:
        asked.append(envelope)
        return answer(envelope)

    monkeypatch.setattr(bus, "request", request)
    return bus


def test_a_module_lists_every_object_of_a_kind_page_by_page(manager: MetaManager,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Envelope] = []
    bus = bus_answering("edged", monkeypatch, lambda e: manager.on_local(e)[0].envelope, asked)
    objects = list_objects(bus, "configmap")
    assert sorted(key.name for key in objects) == [f"c{i}" for i in range(5)]
    assert objects[ResourceKey("default", "configmap", "c3")] == cm("c3")
    assert [PageQuery.parse(e.body).limit for e in asked] == [200]


def test_the_clouds_resync_lists_keys_versions_and_uids(manager: MetaManager,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Envelope] = []
    bus = bus_answering("edgecontroller", monkeypatch, lambda e: manager.on_cloud(e)[0].envelope, asked)
    items = list(listing(bus, "edgehive/cloud/cloudhub", "configmap", limit=2, timeout=1.0, node=NODE))
    assert items[0] == ListedItem(ResourceKey("default", "configmap", "c0"), "10", "u-c0")
    assert len(items) == 5
    assert [PageQuery.parse(e.body).after for e in asked] == ["", "default/configmap/c1", "default/configmap/c3"]
    assert {(e.src, e.node) for e in asked} == {("edgecontroller", NODE)}


def test_a_replicas_resync_names_itself_so_that_the_answers_come_back_to_it(manager: MetaManager,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Envelope] = []
    bus = bus_answering("edgecontroller", monkeypatch, lambda e: manager.on_cloud(e)[0].envelope, asked)
    src = topics.replica_module("edgecontroller", "r2")
    items = list(listing(bus, "edgehive/cloud/cloudhub", "configmap", limit=2, timeout=1.0, node=NODE, src=src))
    assert len(items) == 5
    assert {(e.src, e.node) for e in asked} == {("edgecontroller-r2", NODE)}


def test_a_page_that_does_not_move_forward_ends_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    def same_page(query: Envelope) -> Envelope:
        return query.reply("metamanager", {"items": [], "next": "default/configmap/a"})

    bus = bus_answering("edged", monkeypatch, same_page, [])
    with pytest.raises(BodyError) as refused:
        list_objects(bus, "configmap")
    assert refused.value.field == "body.next"


def test_a_modules_listing_without_objects_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def keys_only(query: Envelope) -> Envelope:
        return query.reply("metamanager", {"items": [{"key": "default/configmap/a", "rv": "1"}], "next": None})

    bus = bus_answering("edged", monkeypatch, keys_only, [])
    with pytest.raises(BodyError, match="object"):
        list_objects(bus, "configmap")


def test_listings_ask_every_kinds_first_page_before_waiting_then_page_on(manager: MetaManager) -> None:
    """MetaManager's real answers; each is delivered only when the listing reads it, so the order of sends and
    reads is the listing's own."""
    manager.on_cloud(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                              res=ResourceKey("default", "secret", "s0"), rv="20", body=cm("s0")))
    published: list[Envelope] = []
    events: list[str] = []
    bus = idle_bus(published)
    real_ask = bus.ask

    def ask(topic: str, envelope: Envelope, timeout: float = 10.0, resend_after: float | None = None) -> Any:
        asked = real_ask(topic, envelope, timeout, resend_after)
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
