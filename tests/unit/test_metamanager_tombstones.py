"""MetaManager's stores never let an older object replace a newer one, nor bring back a deleted one: the broker
(NATS 2.9) redelivers unacknowledged QoS 1 messages after ack_wait, out of order. The same behaviour tests for
the SQLite store (on real files) and the in-memory one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.metamanager.manager import MetaManager
from edge.metamanager.memorystore import MemoryStore
from edge.metamanager.objectstore import Outcome, TombstoneLimits, should_replace, tombstone_refuses
from edge.metamanager.store import PRUNE_EVERY, MetaStore
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey

KEY = ResourceKey("default", "configmap", "c")
AnyStore = MetaStore | MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[..., AnyStore]


@pytest.fixture(params=["sqlite", "memory"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Makes an empty store of either kind (keyword arguments: its limits and clock); SQLite ones are closed
    after the test."""
    opened: list[MetaStore] = []

    def make(**kwargs: object) -> AnyStore:
        if request.param == "memory":
            return MemoryStore(**kwargs)  # type: ignore[arg-type]
        opened.append(MetaStore(tmp_path / f"m{len(opened)}.db", **kwargs))  # type: ignore[arg-type]
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def cm(uid: str = "u1", data: str = "x", name: str = "c") -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid}, "data": {"k": data}}


def test_the_rules() -> None:
    assert should_replace("5", "u1", "6", "u1")
    assert not should_replace("5", "u1", "4", "u2")  # integers: the order alone decides
    assert not should_replace("5", "u1", "5", "u1")
    assert should_replace("a", "u1", "b", "u1")  # not integers: applied (no order to trust)
    assert should_replace("5", "u1", "x", "u1")
    assert should_replace("a", "u1", "a", "u2")
    assert not should_replace("a", "u1", "a", "u1")  # the same version of the same incarnation: a duplicate
    assert should_replace("5", "u1", "²", "u1")  # not ASCII digits: not an integer
    assert tombstone_refuses(7, "6")
    assert not tombstone_refuses(7, "7")  # placed on the node again, unchanged
    assert not tombstone_refuses(7, "8")
    assert not tombstone_refuses(7, "abc")
    assert not tombstone_refuses(7, None)


def test_an_update_older_than_a_delete_is_refused(new_store: Make) -> None:
    store = new_store()
    assert store.upsert(KEY, "5", cm(data="five")) == Outcome.APPLIED
    assert store.delete(KEY, "u1", "6") == Outcome.DELETED
    assert store.tombstone(KEY) == 6
    assert store.upsert(KEY, "5", cm(data="five, redelivered")) == Outcome.STALE
    assert store.upsert(KEY, "4", cm(data="older still")) == Outcome.STALE
    assert store.get(KEY) is None
    assert store.upsert(KEY, "9", cm(uid="u2", data="recreated")) == Outcome.APPLIED
    assert store.tombstone(KEY) is None  # the stored version orders from now on
    assert store.upsert(KEY, "5", cm(data="five, once more")) == Outcome.STALE
    stored = store.get(KEY)
    assert stored is not None
    assert (stored.rv, stored.obj["data"]) == ("9", {"k": "recreated"})


def test_a_delete_and_re_add_at_the_same_version_applies(new_store: Make) -> None:
    """What a resync (or a pod leaving and coming back) sends: the delete carries the version last sent, and
    the object comes back unchanged at that version."""
    manager = MetaManager(new_store())
    for op, rv in ((Op.INSERT, "5"), (Op.DELETE, "5"), (Op.INSERT, "5")):
        reply = manager.on_cloud(Envelope(node="edge-1", src="edgecontroller", group=Group.RESOURCE, op=op,
                                          res=KEY, rv=rv, body=cm()))[-1].envelope
        assert reply.body["outcome"] in ("applied", "deleted")
    assert manager.lookup(KEY) is not None
    assert manager.stale == 0


def test_a_delete_of_what_is_not_held_still_leaves_a_tombstone(new_store: Make) -> None:
    store = new_store()
    assert store.delete(KEY, "u1", "6") == Outcome.ABSENT  # the delete overtook the insert
    assert store.upsert(KEY, "5", cm()) == Outcome.STALE
    assert store.delete(KEY, None, "4") == Outcome.ABSENT
    assert store.tombstone(KEY) == 6  # an older delete does not lower it
    assert store.delete(KEY, None, "opaque") == Outcome.ABSENT
    assert store.tombstone(KEY) == 6


def test_a_delete_older_than_the_object_held_is_refused(new_store: Make) -> None:
    store = new_store()
    store.upsert(KEY, "8", cm(data="eight"))
    assert store.delete(KEY, "u1", "5") == Outcome.STALE
    assert store.get(KEY) is not None
    assert store.tombstone(KEY) is None
    assert store.delete(KEY, "u1", "0") == Outcome.DELETED  # no version known (EdgeController's "pod gone")
    assert store.upsert(KEY, "8", cm(data="eight")) == Outcome.APPLIED
    assert store.delete(KEY, "u1", None) == Outcome.DELETED  # no version: applied, and no tombstone
    assert store.tombstone(KEY) is None


def test_opaque_versions_fall_back_to_applying(new_store: Make) -> None:
    store = new_store()
    assert store.upsert(KEY, "b", cm(data="b")) == Outcome.APPLIED
    assert store.upsert(KEY, "a", cm(data="a")) == Outcome.APPLIED
    assert store.upsert(KEY, "a", cm(data="a again")) == Outcome.STALE  # a duplicate
    assert store.delete(KEY, None, "z") == Outcome.DELETED
    assert store.tombstone(KEY) is None
    assert store.upsert(KEY, "a", cm(data="back")) == Outcome.APPLIED


def test_tombstones_are_forgotten_past_their_age_and_count(new_store: Make) -> None:
    clock = Clock()
    store = new_store(limits=TombstoneLimits(max_count=3, max_age_s=60.0), clock=clock)
    keys = [ResourceKey("default", "configmap", f"c{i}") for i in range(6)]
    for i, key in enumerate(keys):
        clock.now += 1
        store.delete(key, None, str(10 + i))
    store.prune()
    assert store.tombstones() == 3
    assert [store.tombstone(k) for k in keys] == [None, None, None, 13, 14, 15]
    clock.now += 59
    assert store.tombstone(keys[3]) is None  # past its age even before a prune
    assert store.upsert(keys[3], "1", cm(name="c3")) == Outcome.APPLIED
    assert store.tombstone(keys[5]) == 15
    clock.now += 10
    store.prune()
    assert store.tombstones() == 0


def test_the_sqlite_store_prunes_during_a_burst(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "m.db", limits=TombstoneLimits(max_count=5))
    with store.transaction():
        for i in range(PRUNE_EVERY * 2 + 1):
            store.delete(ResourceKey("default", "configmap", f"c{i}"), None, str(i + 1))
    assert store.tombstones() <= 5 + PRUNE_EVERY
    store.close()


def test_tombstones_survive_a_restart(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "m.db")
    store.upsert(KEY, "5", cm())
    store.delete(KEY, "u1", "6")
    store.close()
    store = MetaStore(tmp_path / "m.db")
    assert store.upsert(KEY, "5", cm()) == Outcome.STALE
    assert store.get(KEY) is None
    store.close()


def test_a_database_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "m.db") as raw:
        raw.execute("CREATE TABLE resource (key TEXT PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT, "
                    "rv TEXT NOT NULL, uid TEXT, value BLOB NOT NULL, updated_ms INTEGER NOT NULL)")
        raw.execute("PRAGMA user_version = 1")
    raw.close()
    store = MetaStore(tmp_path / "m.db")
    assert store.delete(KEY, None, "3") == Outcome.ABSENT
    assert store.tombstone(KEY) == 3
    store.close()


def test_a_transaction_that_raises_undoes_its_tombstones(new_store: Make) -> None:
    store = new_store()
    other = ResourceKey("default", "configmap", "o")
    store.upsert(KEY, "5", cm())
    store.delete(other, None, "4")

    def fails() -> None:
        with store.transaction():
            store.delete(KEY, "u1", "6")
            store.upsert(other, "7", cm(name="o"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fails()
    assert store.get(KEY) is not None
    assert store.tombstone(KEY) is None
    assert store.tombstone(other) == 4
    assert store.get(other) is None


def test_the_manager_counts_a_refused_update_and_forwards_nothing(new_store: Make) -> None:
    manager = MetaManager(new_store(), node="edge-1")

    def send(op: Op, rv: str) -> list[str]:
        sends = manager.on_cloud(Envelope(node="edge-1", src="edgecontroller", group=Group.RESOURCE, op=op,
                                          res=KEY, rv=rv, body=cm()))
        assert sends[-1].envelope.op == Op.RESPONSE
        return [s.envelope.body.get("outcome", s.topic) if s.topic.endswith("to-cloud") else s.topic for s in sends]

    assert send(Op.INSERT, "5") == ["edgehive/edge/edged", "applied"]
    assert send(Op.DELETE, "6") == ["edgehive/edge/edged", "deleted"]
    assert send(Op.UPDATE, "5") == ["stale"]  # redelivered after the delete
    assert send(Op.DELETE, "6") == ["absent"]
    assert manager.stale == 1
    batch = [Envelope(node="edge-1", src="edgecontroller", group=Group.RESOURCE, op=Op.UPDATE, res=KEY, rv=rv,
                      body=cm(data=rv)) for rv in ("4", "7", "6")]
    manager.on_cloud_batch(batch)
    assert manager.stale == 3
    assert manager.failed == 0
    stored = manager.lookup(KEY)
    assert stored is not None
    assert stored.rv == "7"
    manager.remember(KEY, "3", cm(data="an old answer"))
    assert manager.stale == 4
