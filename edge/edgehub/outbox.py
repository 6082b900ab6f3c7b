"""EdgeHub's outbox: what the node must tell the cloud, kept on disk until the cloud acknowledges it.

KubeEdge drops an upstream message when the link is down; a node that was offline
for an hour then loses its pod status changes and device readings. Here every
entry waits in SQLite, in order, until the cloud's ``response`` arrives. Entries
that describe state carry a key, and a newer one replaces the older unsent one, so
a long outage costs one entry per pod, not one per change. When the file reaches
its cap, the oldest state entries go first; events the cloud must see are kept.

Kubernetes Events (schemas/events.py) are capped apart, by count: at most ``max_events`` wait, a repeat
replacing its unsent older self (same Event, higher count), and past the cap the oldest Normal one goes
first, then the oldest Warning. A node offline for hours then tells the API server the last thousand
things that happened, not every BackOff of every hour; ``events_dropped`` counts what went.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
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
    group: str | None = None
    """The envelope's group, which a batch's frame names beside the member; None for an entry stored before the
    outbox kept it (it goes up alone)."""


def _migration_1(db: SqliteDatabase) -> None:
    db.execute_sql(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE, "
        "coalesce_key TEXT, is_state INTEGER NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL, "
        "created_ms INTEGER NOT NULL)")
    db.execute_sql("CREATE INDEX outbox_key ON outbox (coalesce_key)")


def _migration_2(db: SqliteDatabase) -> None:
    db.execute_sql("ALTER TABLE outbox ADD COLUMN event_type TEXT")
    db.execute_sql("CREATE INDEX outbox_events ON outbox (event_type, seq) WHERE event_type IS NOT NULL")


def _migration_3(db: SqliteDatabase) -> None:
    db.execute_sql("ALTER TABLE outbox ADD COLUMN grp TEXT")


MIGRATIONS = [_migration_1, _migration_2, _migration_3]
MAX_EVENTS = 1000


class Outbox:
    def __init__(self, path: Path, max_bytes: int, max_events: int = MAX_EVENTS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.events_dropped = 0
        self.db = open_database(path, MIGRATIONS, name="EdgeHub outbox")
        # One writer (``batch`` holds it around its adds, so it is reentrant); readers use their own connections.
        self._lock = threading.RLock()
        self.evicted = 0
        self._over_cap = False
        self._bytes = int(self.db.execute_sql("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])
        self._events = self._count_events()

    def close(self) -> None:
        self.db.close()

    def integrity_ok(self) -> bool:
        return integrity_ok(self.db)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The ``add`` calls made inside as one transaction: one commit (one fsync) for all of them, and none of
        them kept if the block fails. The lock is held throughout, so that no other writer waits on the
        database's lock while holding ours."""
        with self._lock:
            held = self._bytes, self._events
            try:
                with self.db.atomic():
                    yield
            except BaseException:
                self._bytes, self._events = held  # what the adds counted was rolled back with them
                raise

    def add(self, msg_id: str, payload: bytes, key: str | None, event_type: str | None = None, *,
            group: str | None = None) -> None:
        """Append an entry; with ``key`` (a state entry, or an Event's repeat), drop older entries with the same
        key first. ``event_type``: the entry is an Event of that type (Normal, Warning), capped by count.
        ``group``: the envelope's, kept so that the entry can travel in a batch without being decoded."""
        with self._lock, self.db.atomic():
            if key is not None:
                removed = self.db.execute_sql(
                    "DELETE FROM outbox WHERE coalesce_key = ? RETURNING size, event_type", (key,)).fetchall()
                self._bytes -= sum(r[0] for r in removed)
                self._events -= sum(1 for r in removed if r[1] is not None)
            inserted = self.db.execute_sql(
                "INSERT OR IGNORE INTO outbox (msg_id, coalesce_key, is_state, payload, size, created_ms, event_type, "
                "grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (msg_id, key, int(key is not None and event_type is None), payload, len(payload),
                 time.time_ns() // 1_000_000, event_type, group)).rowcount > 0
            if not inserted:  # the same message again (a module's resend): it is there already
                return
            self._bytes += len(payload)
            if event_type is not None:
                self._events += 1
                if self._events > self.max_events:
                    self._drop_events()
            if self._bytes > self.max_bytes:
                self._evict()

    def _count_events(self) -> int:
        return int(self.db.execute_sql("SELECT COUNT(*) FROM outbox WHERE event_type IS NOT NULL").fetchone()[0])

    def _drop_events(self) -> None:
        """Over ``max_events``: the oldest Normal events go first, then the oldest Warnings."""
        removed = self.db.execute_sql(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE event_type IS NOT NULL "
            "ORDER BY event_type = 'Warning', seq LIMIT ?) RETURNING size",
            (self._events - self.max_events,)).fetchall()
        self._bytes -= sum(r[0] for r in removed)
        self._events -= len(removed)
        if not self.events_dropped:
            log.warning("outbox %s holds %d events, its cap: the oldest Normal events are dropped first", self.path,
                        self.max_events)
        self.events_dropped += len(removed)

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
            row = self.db.execute_sql("DELETE FROM outbox WHERE msg_id = ? RETURNING size, event_type",
                                      (msg_id,)).fetchone()
            if row is None:
                return False
            self._bytes -= row[0]
            self._events -= row[1] is not None
            if self._bytes <= self.max_bytes * 0.9:
                self._over_cap = False
            return True

    def after(self, seq: int, limit: int) -> list[Entry]:
        rows = self.db.execute_sql(
            "SELECT seq, msg_id, coalesce_key, payload, grp FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit)).fetchall()
        return [Entry(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def get(self, msg_id: str) -> Entry | None:
        r = self.db.execute_sql("SELECT seq, msg_id, coalesce_key, payload, grp FROM outbox WHERE msg_id = ?",
                                (msg_id,)).fetchone()
        return None if r is None else Entry(r[0], r[1], r[2], bytes(r[3]), r[4])

    def count(self) -> int:
        return int(self.db.execute_sql("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def events(self) -> int:
        """How many Events wait."""
        return self._events

    @property
    def size_bytes(self) -> int:
        return self._bytes
