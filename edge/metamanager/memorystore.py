"""MetaManager's store in memory: the SQLite store's behaviour without a file.

For a process that plays many nodes (``edgehive bench scale`` runs 250 per process), where a
database per node would cost more than what is measured and nothing must survive a restart.
The same behaviour tests run against both stores (tests/unit/test_edge_stores.py).

Objects are kept msgpack-encoded, as SQLite keeps them: a caller that changes what it stored
or what it read changes nothing here, and an object msgpack cannot encode is refused the same
way. Tombstones are kept with the same limits, and go with the process like the rest. One thread at a
time: the simulator runs its nodes on one asyncio loop.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack

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
from schemas.resource import ResourceKey


@dataclass(frozen=True)
class _Row:
    key: ResourceKey
    rv: str
    uid: str | None
    value: bytes


Undo = Callable[[], None]


class MemoryStore:
    def __init__(self, limits: TombstoneLimits = DEFAULT_LIMITS, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock
        self._rows: dict[str, _Row] = {}
        self._keys: list[str] = []  # sorted, for pages in key order
        self._tombs: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (rv, when), oldest first
        self._undo: list[list[Undo]] = []  # per open transaction: what puts back each write, in order

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are undone when the block raises; a nested one's undo joins its parent's on success."""
        self._undo.append([])
        try:
            yield
        except BaseException:
            for undo in reversed(self._undo.pop()):
                undo()
            raise
        done = self._undo.pop()
        if self._undo:
            self._undo[-1].extend(done)

    def upsert(self, key: ResourceKey, rv: str | None, obj: Any) -> Outcome:
        uid = uid_of(obj)
        value = msgpack.packb(obj, use_bin_type=True)
        held, tomb = self._state(key)
        return self._apply(key, decide_upsert(held, tomb, rv, uid, value))

    def delete(self, key: ResourceKey, uid: str | None, rv: str | None = None) -> Outcome:
        held, tomb = self._state(key)
        return self._apply(key, decide_delete(held, tomb, uid, rv))

    def _state(self, key: ResourceKey) -> tuple[Version | None, int | None]:
        """What is held under ``key`` and its tombstone within its age."""
        row = self._rows.get(str(key))
        return (None if row is None else Version(row.rv, row.uid)), self.tombstone(key)

    def _apply(self, key: ResourceKey, decision: Decision) -> Outcome:
        """Make the decision's writes, each undone with the transaction it is made in."""
        if decision.drop_tombstone:
            self._set_tomb(str(key), None)
        if decision.remove:
            self._write(str(key), None)
        if decision.put is not None:
            self._write(str(key), _Row(key, decision.put.rv, decision.put.uid, decision.put.value))
        if decision.tombstone is not None:
            self._set_tomb(str(key), (decision.tombstone, self.clock()))
            self.prune()
        return decision.outcome

    def tombstone(self, key: ResourceKey) -> int | None:
        tomb = self._tombs.get(str(key))
        if tomb is None or tomb[1] < self.clock() - self.limits.max_age_s:
            return None
        return tomb[0]

    def tombstones(self) -> int:
        return len(self._tombs)

    def get(self, key: ResourceKey) -> Stored | None:
        row = self._rows.get(str(key))
        return None if row is None else _stored(row)

    def page(self, kind: str | None, after: str = "", limit: int = 200) -> tuple[list[Stored], str | None]:
        rows: list[_Row] = []
        for text in self._keys[bisect.bisect_right(self._keys, after):]:
            row = self._rows[text]
            if kind is None or row.key.kind == kind:
                rows.append(row)
                if len(rows) > limit:
                    break
        more = len(rows) > limit
        rows = rows[:limit]
        return [_stored(r) for r in rows], (str(rows[-1].key) if more else None)

    def all(self, kind: str | None = None) -> Iterator[Stored]:
        for text in list(self._keys):
            row = self._rows.get(text)
            if row is not None and (kind is None or row.key.kind == kind):
                yield _stored(row)

    def count(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        """Nothing to release: what it holds goes with it."""

    def _write(self, key: str, row: _Row | None) -> None:
        if self._undo:
            before = self._rows.get(key)
            self._undo[-1].append(lambda: self._put(key, before))
        self._put(key, row)

    def _set_tomb(self, key: str, tomb: tuple[int, float] | None) -> None:
        before = self._tombs.pop(key, None)
        if tomb is not None:
            self._tombs[key] = tomb  # at the end: the newest
        if self._undo and before != tomb:
            self._undo[-1].append(lambda: self._restore_tomb(key, before))

    def _restore_tomb(self, key: str, tomb: tuple[int, float] | None) -> None:
        self._tombs.pop(key, None)
        if tomb is not None:
            self._tombs[key] = tomb  # at the end, out of age order: pruned late, but ignored once past its age

    def prune(self) -> None:
        """Forget tombstones past their age, then the oldest beyond the count (no undo: forgetting one early is
        what the limits allow anyway)."""
        cutoff = self.clock() - self.limits.max_age_s
        while self._tombs:
            key, (_, when) = next(iter(self._tombs.items()))
            if when >= cutoff and len(self._tombs) <= self.limits.max_count:
                return
            del self._tombs[key]

    def _put(self, key: str, row: _Row | None) -> None:
        if row is None:
            if self._rows.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
            return
        if key not in self._rows:
            bisect.insort(self._keys, key)
        self._rows[key] = row


def _stored(row: _Row) -> Stored:
    return Stored(row.key, row.rv, row.uid, msgpack.unpackb(row.value, raw=False))
