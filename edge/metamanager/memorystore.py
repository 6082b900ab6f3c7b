"""MetaManager's store in memory: the SQLite store's behaviour without a file.

For a process that plays many nodes (``edgehive bench scale`` runs 250 per process), where a
database per node would cost more than what is measured and nothing must survive a restart.
The same behaviour tests run against both stores (tests/unit/test_edge_stores.py).

Objects are kept msgpack-encoded, as SQLite keeps them: a caller that changes what it stored
or what it read changes nothing here, and an object msgpack cannot encode is refused the same
way. One thread at a time: the simulator runs its nodes on one asyncio loop.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack

from edge.metamanager.objectstore import Outcome, Stored, should_replace, uid_of
from schemas.resource import ResourceKey


@dataclass(frozen=True)
class _Row:
    key: ResourceKey
    rv: str
    uid: str | None
    value: bytes


class MemoryStore:
    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._keys: list[str] = []  # sorted, for pages in key order
        self._undo: list[list[tuple[str, _Row | None]]] = []  # per open transaction: (key, row before), in order

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are undone when the block raises; a nested one's undo joins its parent's on success."""
        self._undo.append([])
        try:
            yield
        except BaseException:
            for key, before in reversed(self._undo.pop()):
                self._put(key, before)
            raise
        done = self._undo.pop()
        if self._undo:
            self._undo[-1].extend(done)

    def upsert(self, key: ResourceKey, rv: str | None, obj: Any) -> Outcome:
        uid = uid_of(obj)
        held = self._rows.get(str(key))
        if held is not None and not should_replace(held.rv, held.uid, rv, uid):
            return Outcome.STALE
        self._write(str(key), _Row(key, rv or "0", uid, msgpack.packb(obj, use_bin_type=True)))
        return Outcome.APPLIED

    def delete(self, key: ResourceKey, uid: str | None) -> Outcome:
        held = self._rows.get(str(key))
        if held is None or (uid is not None and held.uid not in (uid, None)):
            return Outcome.ABSENT
        self._write(str(key), None)
        return Outcome.DELETED

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
            self._undo[-1].append((key, self._rows.get(key)))
        self._put(key, row)

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
