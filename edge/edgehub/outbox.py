"""EdgeHub's outbox: what the node must tell the cloud, kept on disk until the cloud acknowledges it.

KubeEdge drops an upstream message when the link is down; a node that was offline
for an hour then loses its pod status changes and device readings. Here every
entry waits in SQLite, in order, until the cloud's ``response`` arrives. Entries
that describe state carry a key, and a newer one replaces the older unsent one, so
a long outage costs one entry per pod, not one per change. When the file reaches
its cap, the oldest state entries go first; events the cloud must see are kept.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from peewee import SqliteDatabase

from edge.storage import integrity_ok, open_database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    seq: int
    msg_id: str
    key: str | None
    payload: bytes


def _migration_1(db: SqliteDatabase) -> None:
    db.execute_sql(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE, "
        "coalesce_key TEXT, is_state INTEGER NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL, "
        "created_ms INTEGER NOT NULL)")
    db.execute_sql("CREATE INDEX outbox_key ON outbox (coalesce_key)")


MIGRATIONS = [_migration_1]


class Outbox:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.db = open_database(path, MIGRATIONS, name="EdgeHub outbox")
        self._lock = threading.Lock()  # one writer; readers use their own connections
        self.evicted = 0
        self._over_cap = False
        self._bytes = int(self.db.execute_sql("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def integrity_ok(self) -> bool:
        return integrity_ok(self.db)

    def add(self, msg_id: str, payload: bytes, key: str | None) -> None:
        """Append an entry; with ``key`` (a state entry), drop older entries with the same key first."""
        with self._lock, self.db.atomic():
            if key is not None:
                removed = self.db.execute_sql(
                    "DELETE FROM outbox WHERE coalesce_key = ? RETURNING size", (key,)).fetchall()
                self._bytes -= sum(r[0] for r in removed)
            self.db.execute_sql(
                "INSERT OR IGNORE INTO outbox (msg_id, coalesce_key, is_state, payload, size, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (msg_id, key, int(key is not None), payload, len(payload), time.time_ns() // 1_000_000))
            self._bytes += len(payload)
            if self._bytes > self.max_bytes:
                self._evict()

    def _evict(self) -> None:
        """Over the cap: the oldest state entries go, never events."""
        freed = 0
        while self._bytes > self.max_bytes:
            row = self.db.execute_sql(
                "SELECT seq, size FROM outbox WHERE is_state = 1 ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                break
            self.db.execute_sql("DELETE FROM outbox WHERE seq = ?", (row[0],))
            self._bytes -= row[1]
            freed += 1
        self.evicted += freed
        if not self._over_cap:
            self._over_cap = True
            log.warning("outbox %s reached its cap of %d bytes: dropped %d oldest state entries%s; raise "
                        "outbox_max_bytes if the link is often down this long", self.path, self.max_bytes, freed,
                        "" if self._bytes <= self.max_bytes else
                        " and is still over it with events only, which are kept")
        if self._bytes <= self.max_bytes * 0.9:
            self._over_cap = False

    def remove(self, msg_id: str) -> bool:
        with self._lock, self.db.atomic():
            row = self.db.execute_sql("DELETE FROM outbox WHERE msg_id = ? RETURNING size", (msg_id,)).fetchone()
            if row is None:
                return False
            self._bytes -= row[0]
            if self._bytes <= self.max_bytes * 0.9:
                self._over_cap = False
            return True

    def after(self, seq: int, limit: int) -> list[Entry]:
        rows = self.db.execute_sql(
            "SELECT seq, msg_id, coalesce_key, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit)).fetchall()
        return [Entry(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def get(self, msg_id: str) -> Entry | None:
        r = self.db.execute_sql("SELECT seq, msg_id, coalesce_key, payload FROM outbox WHERE msg_id = ?",
                                (msg_id,)).fetchone()
        return None if r is None else Entry(r[0], r[1], r[2], bytes(r[3]))

    def count(self) -> int:
        return int(self.db.execute_sql("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def size_bytes(self) -> int:
        return self._bytes
