"""MetaManager's store: every object the cloud sent this node, in SQLite, newest resourceVersion wins.

KubeEdge writes whatever arrives last; a message delayed on the link could then
overwrite a newer object with an older one. Here a write applies only when its
resourceVersion is newer than the stored one, and deletes leave tombstones (in the same
file, so they survive a restart) that refuse an update older than the delete: duplicates
and reordering leave the store as it should be. The rules and the interface MetaManager
uses are in edge.metamanager.objectstore.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
from peewee import BlobField, CharField, IntegerField, Model, SqliteDatabase

from edge.metamanager.objectstore import (
    DEFAULT_LIMITS,
    Decision,
    Outcome,
    Stored,
    TombstoneLimits,
    Version,
    decide_delete,
    decide_upsert,
    uid_of,
)
from edge.storage import integrity_ok, open_database
from schemas.resource import ResourceKey


def _migration_1(db: SqliteDatabase) -> None:
    db.execute_sql(
        "CREATE TABLE resource (key TEXT PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT, rv TEXT NOT NULL, "
        "uid TEXT, value BLOB NOT NULL, updated_ms INTEGER NOT NULL)")
    db.execute_sql("CREATE INDEX resource_kind ON resource (kind, key)")


def _migration_2(db: SqliteDatabase) -> None:
    """Tombstones: key -> resourceVersion of its last delete (an integer: only those order anything)."""
    db.execute_sql("CREATE TABLE tombstone (key TEXT PRIMARY KEY, rv INTEGER NOT NULL, deleted_ms INTEGER NOT NULL)")
    db.execute_sql("CREATE INDEX tombstone_age ON tombstone (deleted_ms)")


MIGRATIONS = [_migration_1, _migration_2]

PRUNE_EVERY = 64
"""Tombstones written between two prunes: a prune counts the table, too dear for every delete of a burst, so
the table may hold up to this many over ``TombstoneLimits.max_count`` for a while."""


class MetaStore:
    def __init__(self, path: Path, limits: TombstoneLimits = DEFAULT_LIMITS,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.limits = limits
        self.clock = clock
        self._since_prune = 0
        self.db = open_database(path, MIGRATIONS, name="MetaManager")

        class Resource(Model):
            key = CharField(primary_key=True)
            kind = CharField()
            namespace = CharField(null=True)
            rv = CharField()
            uid = CharField(null=True)
            value = BlobField()
            updated_ms = IntegerField()

            class Meta:
                database = self.db
                table_name = "resource"

        self._model = Resource

    def close(self) -> None:
        self.db.close()

    def integrity_ok(self) -> bool:
        return integrity_ok(self.db)

    def transaction(self) -> Any:
        """One transaction (one fsync) around many writes: how a burst from the cloud stays cheap."""
        return self.db.atomic()

    def upsert(self, key: ResourceKey, rv: str | None, obj: Any) -> Outcome:
        """Store ``obj`` unless what is stored is as new or newer (call inside ``transaction()`` for batches)."""
        uid = uid_of(obj)
        value = msgpack.packb(obj, use_bin_type=True)
        with self.db.atomic():
            held, tomb = self._state(key)
            return self._apply(key, decide_upsert(held, tomb, rv, uid, value))

    def delete(self, key: ResourceKey, uid: str | None, rv: str | None = None) -> Outcome:
        """Remove ``key``; with a UID, only if the stored object has that UID or none (a recreated one stays);
        never an object newer than the delete. Leaves a tombstone when the key ends up absent."""
        with self.db.atomic():
            held, tomb = self._state(key)
            return self._apply(key, decide_delete(held, tomb, uid, rv))

    def _state(self, key: ResourceKey) -> tuple[Version | None, int | None]:
        """What is held under ``key`` and its tombstone within its age, in one statement (a LEFT JOIN from the
        key itself, so that a key with neither still gives a row)."""
        rv, uid, tomb = self.db.execute_sql(
            "SELECT resource.rv, resource.uid, (SELECT rv FROM tombstone WHERE key = ?1 AND deleted_ms >= ?2) "
            "FROM (SELECT ?1 AS k) AS asked LEFT JOIN resource ON resource.key = asked.k",
            (str(key), self._cutoff_ms())).fetchone()
        return (None if rv is None else Version(rv, uid)), (None if tomb is None else int(tomb))

    def _apply(self, key: ResourceKey, decision: Decision) -> Outcome:
        """Make the decision's writes (inside the caller's transaction)."""
        if decision.drop_tombstone:
            self.db.execute_sql("DELETE FROM tombstone WHERE key = ?", (str(key),))
        if decision.remove:
            self.db.execute_sql("DELETE FROM resource WHERE key = ?", (str(key),))
        if decision.put is not None:
            self.db.execute_sql(
                "INSERT OR REPLACE INTO resource (key, kind, namespace, rv, uid, value, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(key), key.kind, key.namespace, decision.put.rv, decision.put.uid, decision.put.value,
                 self._now_ms()))
        if decision.tombstone is not None:
            self.db.execute_sql("INSERT OR REPLACE INTO tombstone (key, rv, deleted_ms) VALUES (?, ?, ?)",
                                (str(key), decision.tombstone, self._now_ms()))
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self.prune()
        return decision.outcome

    def tombstone(self, key: ResourceKey) -> int | None:
        row = self.db.execute_sql("SELECT rv FROM tombstone WHERE key = ? AND deleted_ms >= ?",
                                  (str(key), self._cutoff_ms())).fetchone()
        return None if row is None else int(row[0])

    def tombstones(self) -> int:
        return int(self.db.execute_sql("SELECT count(*) FROM tombstone").fetchone()[0])

    def prune(self) -> None:
        """Forget tombstones past their age, then the oldest beyond the count."""
        self._since_prune = 0
        self.db.execute_sql("DELETE FROM tombstone WHERE deleted_ms < ?", (self._cutoff_ms(),))
        self.db.execute_sql(
            "DELETE FROM tombstone WHERE key IN (SELECT key FROM tombstone ORDER BY deleted_ms DESC, key "
            "LIMIT -1 OFFSET ?)", (self.limits.max_count,))

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _cutoff_ms(self) -> int:
        """The time of the oldest delete whose tombstone is still within its age."""
        return self._now_ms() - int(self.limits.max_age_s * 1000)

    def get(self, key: ResourceKey) -> Stored | None:
        row = self._model.get_or_none(self._model.key == str(key))
        return None if row is None else _stored(row)

    def page(self, kind: str | None, after: str = "", limit: int = 200) -> tuple[list[Stored], str | None]:
        """Objects in key order after ``after``; the second value is where the next page starts, or None."""
        query = self._model.select().where(self._model.key > after)
        if kind is not None:
            query = query.where(self._model.kind == kind)
        rows = list(query.order_by(self._model.key).limit(limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_stored(r) for r in rows], (rows[-1].key if more else None)

    def all(self, kind: str | None = None) -> Iterator[Stored]:
        after = ""
        while True:
            items, nxt = self.page(kind, after, 500)
            yield from items
            if nxt is None:
                return
            after = nxt

    def count(self) -> int:
        return int(self._model.select().count())


def _stored(row: Any) -> Stored:
    return Stored(ResourceKey.parse(row.key), row.rv, row.uid, msgpack.unpackb(row.value, raw=False))
