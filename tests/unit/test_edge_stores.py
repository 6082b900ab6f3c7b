"""MetaManager's stores (SQLite on real files, and in memory: the same behaviour tests for both) and EdgeHub's
outbox on real SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.edgehub.outbox import Outbox
from edge.edgehub.routing import coalesce_key
from edge.metamanager.manager import MetaManager
from edge.metamanager.memorystore import MemoryStore
from edge.metamanager.objectstore import ObjectStore, Outcome, newer
from edge.metamanager.store import MetaStore
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey

KEY = ResourceKey("default", "configmap", "c")
AnyStore = MetaStore | MemoryStore


class Boom(Exception):
    pass


@pytest.fixture(params=["sqlite", "memory"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], AnyStore]]:
    """Makes an empty store of either kind; SQLite ones are closed after the test."""
    opened: list[MetaStore] = []

    def make() -> AnyStore:
        if request.param == "memory":
            return MemoryStore()
        opened.append(MetaStore(tmp_path / f"m{len(opened)}.db"))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def cm(uid: str = "u1", data: str = "x") -> dict[str, object]:
    return {"metadata": {"name": "c", "namespace": "default", "uid": uid}, "data": {"k": data}}


def test_resource_versions() -> None:
    assert newer("10", "9")
    assert not newer("9", "10")
    assert not newer("10", "10")
    assert newer("b", "a")  # opaque: different means newer
    assert newer("1", None)


def _apply_newer_only(store: ObjectStore) -> None:
    assert store.upsert(KEY, "5", cm(data="five")) == Outcome.APPLIED
    assert store.upsert(KEY, "5", cm(data="again")) == Outcome.STALE
    assert store.upsert(KEY, "4", cm(data="older")) == Outcome.STALE
    # etcd's revisions are global: a recreated object's is greater, so a lower one is an older incarnation's
    assert store.upsert(KEY, "3", cm(uid="u0", data="an older incarnation, redelivered")) == Outcome.STALE
    assert store.upsert(KEY, "6", cm(uid="u2", data="recreated")) == Outcome.APPLIED
    assert store.delete(KEY, "u1") == Outcome.ABSENT  # the old incarnation's delete


def _holds_the_recreated_one_then_deletes_it(store: ObjectStore) -> None:
    stored = store.get(KEY)
    assert stored is not None
    assert stored.obj["data"] == {"k": "recreated"}
    assert store.delete(KEY, "u2") == Outcome.DELETED
    assert store.get(KEY) is None


def test_store_applies_only_newer(new_store: Callable[[], AnyStore]) -> None:
    store = new_store()
    _apply_newer_only(store)
    _holds_the_recreated_one_then_deletes_it(store)


def test_sqlite_store_survives_reopen(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "m.db")
    _apply_newer_only(store)
    store.close()
    store = MetaStore(tmp_path / "m.db")
    assert store.integrity_ok()
    with sqlite3.connect(tmp_path / "m.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
    _holds_the_recreated_one_then_deletes_it(store)


def test_a_delete_without_a_uid_or_of_an_object_without_one_removes_it(new_store: Callable[[], AnyStore]) -> None:
    store = new_store()
    store.upsert(KEY, "1", cm())
    assert store.delete(KEY, None) == Outcome.DELETED
    assert store.delete(KEY, None) == Outcome.ABSENT
    store.upsert(KEY, "1", {"metadata": {"name": "c", "namespace": "default"}})
    assert store.delete(KEY, "any") == Outcome.DELETED


def test_what_was_stored_or_read_is_a_copy(new_store: Callable[[], AnyStore]) -> None:
    store = new_store()
    obj = cm()
    store.upsert(KEY, "1", obj)
    obj["data"] = {"k": "changed after the write"}
    read = store.get(KEY)
    assert read is not None
    read.obj["data"]["k"] = "changed after the read"
    again = store.get(KEY)
    assert again is not None
    assert again.obj["data"] == {"k": "x"}


def _fails_after(store: ObjectStore, *writes: Callable[[], object]) -> None:
    """A transaction that writes, then raises."""
    with store.transaction():
        for write in writes:
            write()
        raise Boom


def test_a_transaction_that_raises_is_undone_alone(new_store: Callable[[], AnyStore]) -> None:
    store = new_store()
    other = ResourceKey("default", "secret", "s")
    store.upsert(KEY, "1", cm())
    with store.transaction():
        store.upsert(other, "1", {"metadata": {"name": "s", "namespace": "default"}})
        with pytest.raises(Boom):
            _fails_after(store, lambda: store.upsert(KEY, "2", cm(data="two")), lambda: store.delete(other, None))
    kept = store.get(KEY)
    assert kept is not None
    assert (kept.rv, kept.obj["data"]) == ("1", {"k": "x"})
    assert store.get(other) is not None

    def nested() -> None:
        with store.transaction():
            store.upsert(KEY, "3", cm(data="three"))

    with pytest.raises(Boom):
        _fails_after(store, nested)  # the outer one fails after the inner one succeeded: both undone
    undone = store.get(KEY)
    assert undone is not None
    assert undone.rv == "1"


def test_pages(new_store: Callable[[], AnyStore]) -> None:
    store = new_store()
    for i in range(25):
        key = ResourceKey("default", "configmap", f"c{i:02d}")
        store.upsert(key, "1", {"metadata": {"name": key.name, "namespace": "default"}})
    store.upsert(ResourceKey("default", "secret", "s"), "1", {"metadata": {"name": "s", "namespace": "default"}})
    first, nxt = store.page("configmap", "", 10)
    assert len(first) == 10
    assert nxt == "default/configmap/c09"
    assert len(list(store.all("configmap"))) == 25
    assert store.count() == 26


def test_manager_acks_forwards_and_refuses(new_store: Callable[[], AnyStore]) -> None:
    manager = MetaManager(new_store())
    insert = Envelope(node="edge-1", src="cloudhub", group=Group.RESOURCE, op=Op.INSERT, res=KEY, rv="3", body=cm())
    sends = manager.on_cloud(insert)
    assert [s.topic for s in sends] == ["edgehive/edge/edged", "edgehive/edge/to-cloud"]
    assert sends[1].envelope.parent == insert.id
    assert manager.on_cloud(insert)[0].envelope.body == {"outcome": "stale"}  # no forward when stale
    query = Envelope(node="edge-1", src="edged", group=Group.META, op=Op.QUERY, res=KEY)
    answer = manager.on_local(query)[0]
    assert answer.topic == "edgehive/edge/edged"
    assert answer.envelope.body["object"]["data"] == {"k": "x"}
    missing = Envelope(node="edge-1", src="edged", group=Group.META, op=Op.QUERY,
                       res=ResourceKey("default", "secret", "nope"))
    assert manager.on_local(missing)[0].envelope.op == Op.ERROR
    resync = Envelope(node="edge-1", src="cloudhub", group=Group.META, op=Op.QUERY, body={"limit": 10})
    reply = manager.on_cloud(resync)[0].envelope
    assert reply.body == {"items": [{"key": str(KEY), "rv": "3", "uid": "u1"}], "next": None}


def test_outbox_order_coalescing_and_cap(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1000)
    box.add("e1", b"E" * 100, None)
    box.add("s1", b"S" * 100, "ns/podstatus/a")
    box.add("s2", b"T" * 100, "ns/podstatus/a")  # replaces s1
    box.add("e2", b"F" * 100, None)
    assert [e.msg_id for e in box.after(0, 10)] == ["e1", "s2", "e2"]
    for i in range(10):  # over the cap: state entries go, events stay
        box.add(f"x{i}", b"Z" * 100, f"ns/podstatus/p{i}")
    ids = [e.msg_id for e in box.after(0, 100)]
    assert "e1" in ids
    assert "e2" in ids
    assert box.size_bytes <= 1000
    assert box.evicted > 0
    assert box.remove("e1")
    assert not box.remove("e1")
    box.close()
    reopened = Outbox(tmp_path / "o.db", max_bytes=1000)
    assert reopened.after(0, 1)[0].msg_id == "e2"
    assert reopened.size_bytes == sum(len(e.payload) for e in reopened.after(0, 100))


def test_what_coalesces() -> None:
    status = Envelope(node="n", src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                      res=ResourceKey("ns", "podstatus", "p"))
    register = Envelope(node="n", src="edged", group=Group.RESOURCE, op=Op.INSERT, res=ResourceKey(None, "node", "n"))
    assert coalesce_key(status) == "ns/podstatus/p"
    # DeviceTwin's report of a device (tests/unit/test_dmi_reports_offline.py follows one from a mapper's reports)
    device = Envelope(node="n", src="devicetwin", group=Group.TWIN, op=Op.UPDATE,
                      res=ResourceKey("ns", "devicestatus", "d"))
    assert coalesce_key(device) == "ns/devicestatus/d"
    assert coalesce_key(register) is None
