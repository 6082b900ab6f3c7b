"""Paging through MetaManager's store as the cloud's resync and the node's modules do, answered by the real
MetaManager logic over a real store, without a broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.metaclient import list_objects
from edge.metamanager.manager import MetaManager
from edge.metamanager.store import MetaStore
from runtime.bus import Bus, BusSettings
from runtime.connection import ConnectionSettings
from runtime.listing import listing
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.fields import BodyError
from schemas.link import ListedItem, PageQuery
from schemas.resource import ResourceKey

NODE = "edge-1"


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


def bus_answering(module: str, monkeypatch: pytest.MonkeyPatch, answer: Callable[[Envelope], Envelope],
                  asked: list[Envelope]) -> Bus:
    """A real Bus (never connected) whose requests ``answer`` answers."""
    bus = Bus(BusSettings(ConnectionSettings(url=BrokerUrl.parse("mqtt://127.0.0.1:1"), client_id=module),
                          module=module, side=topics.Side.EDGE, node=NODE))

    def request(_topic: str, envelope: Envelope, timeout: float = 10.0) -> Envelope:
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
