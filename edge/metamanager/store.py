"""MetaManager's store: every object the cloud sent this node, in SQLite, newest resourceVersion wins.

KubeEdge writes whatever arrives last; a message delayed on the link could then
overwrite a newer object with an older one. Here a write applies only when its
resourceVersion is newer than the stored one (or the object was recreated with a
new UID), so duplicates and reordering leave the store as it should be. The rule and
the interface MetaManager uses are in edge.metamanager.objectstore.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
from peewee import BlobField, CharField, IntegerField, Model, SqliteDatabase

from edge.metamanager.objectstore import Outcome, Stored, should_replace, uid_of
from edge.storage import integrity_ok, open_database
from schemas.resource import ResourceKey


def _migration_1(db: SqliteDatabase) -> None:
    db.execute_sql(
        "CREATE TABLE resource (key TEXT PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT, rv TEXT NOT NULL, "
        "uid TEXT, value BLOB NOT NULL, updated_ms INTEGER NOT NULL)")
    db.execute_sql("CREATE INDEX resource_kind ON resource (kind, key)")


MIGRATIONS = [_migration_1]


class MetaStore:
    def __init__(self, path: Path) -> None:
        self.path = path
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
        with self.db.atomic():
            row = self.db.execute_sql("SELECT rv, uid FROM resource WHERE key = ?", (str(key),)).fetchone()
            if row is not None and not should_replace(row[0], row[1], rv, uid):
                return Outcome.STALE
            self.db.execute_sql(
                "INSERT OR REPLACE INTO resource (key, kind, namespace, rv, uid, value, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(key), key.kind, key.namespace, rv or "0", uid, msgpack.packb(obj, use_bin_type=True),
                 time.time_ns() // 1_000_000))
        return Outcome.APPLIED

    def delete(self, key: ResourceKey, uid: str | None) -> Outcome:
        """Remove ``key``; with a UID, only if the stored object has that UID or none (a recreated one stays)."""
        with self.db.atomic():
            if uid is None:
                cursor = self.db.execute_sql("DELETE FROM resource WHERE key = ?", (str(key),))
            else:
                cursor = self.db.execute_sql("DELETE FROM resource WHERE key = ? AND (uid = ? OR uid IS NULL)",
                                             (str(key), uid))
        return Outcome.DELETED if cursor.rowcount else Outcome.ABSENT

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
