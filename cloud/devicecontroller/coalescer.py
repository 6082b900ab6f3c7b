"""Device status writes waiting for the API server, one per device: a newer report joins the one still waiting.

A node reports a device's whole status each time (DeviceTwin's CloudReports), and DeviceController writes it as
a JSON merge patch of ``status``: ``twins`` (a list, which a merge patch replaces whole) and, when the report
has them, ``state`` and ``lastOnlineTime``. Applying report A then report B therefore ends exactly as applying
``merge(A, B)`` once: B's twins, B's state and lastOnlineTime where B has them, else A's. With one write per
report, a hundred devices reporting every second queued up behind each other (``edgehive bench mapper``:
register to status p50 10.9 s); with one write per device per round trip, only the newest values travel.

This module holds no threads and makes no calls: writers (controller.py) ``take`` a write, make it, then say
how it went (``done``, ``failed``, ``dropped``). A device is never handed to two writers at once, so one
device's writes stay in order. Each write carries the acknowledgements (``acks``) of every report merged into
it; the writer sends them only once the write succeeded, so a report the node sees acknowledged is in the API
server. A failed write goes back under any newer report that arrived meanwhile (the newer values win, every
ack is kept) and waits out a backoff before it is taken again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from runtime.backoff import Backoff

A = TypeVar("A")

MAX_ACKS = 256
"""Acknowledgements kept per device. Only a device's newest report is still waiting in its node's outbox (a newer
one replaces it there), so past this many the oldest are let go: they acknowledge nothing the node still holds."""


@dataclass(frozen=True)
class Key:
    """Which object one status write goes to."""

    namespace: str
    name: str
    target: str
    """The status object kind written (statusobject.DEVICE or DEVICESTATUS)."""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} ({self.target})"


def merge_status(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """One status patch that ends as ``older`` then ``newer`` would: a merge patch's top-level keys, newer winning
    (``twins`` is a list, which a merge patch replaces whole; ``state`` and ``lastOnlineTime`` are strings).
    A nested map would need a deep merge: refused, so that a new field cannot silently lose values."""
    for name, value in newer.items():
        if isinstance(value, dict) and isinstance(older.get(name), dict):
            raise ValueError(f"status field {name!r} is a map: merge_status only merges top-level fields")
    return {**older, **newer}


@dataclass(frozen=True)
class Write(Generic[A]):
    """One device's status patch to write, and what to acknowledge once it is written."""

    key: Key
    device: dict[str, Any]
    """The Device as the informer held it at the newest report (a DeviceStatus made on first use is owned by it)."""
    patch: dict[str, Any]
    acks: tuple[A, ...]
    reports: int = 1
    """How many reports this write carries (more than one: coalesced)."""
    failures: int = 0
    """Failed attempts so far: how long the next backoff is."""
    not_before: float = 0.0
    """Clock time before which it is not taken (a backoff after a failure)."""

    def then(self, newer: Write[A]) -> Write[A]:
        """This write followed by ``newer``: newer values win, every ack is kept (the newest MAX_ACKS)."""
        return replace(self, device=newer.device, patch=merge_status(self.patch, newer.patch),
                       acks=(self.acks + newer.acks)[-MAX_ACKS:], reports=self.reports + newer.reports)


class Coalescer(Generic[A]):
    """Pending status writes by device, in the order devices first reported; thread-safe, no I/O."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 backoff: Callable[[int], float] | None = None) -> None:
        self.clock = clock
        self.backoff = backoff or (lambda failures: Backoff(initial=0.5, maximum=10.0, attempts=failures - 1).next())
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        self._pending: dict[Key, Write[A]] = {}
        self._inflight: set[Key] = set()
        self._ready = threading.Condition()
        self._closed = False
        self.coalesced = 0
        """Reports that joined a write already waiting (each saved one API call)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._ready:
            return len(self._pending)

    def put(self, key: Key, device: dict[str, Any], patch: dict[str, Any], ack: A) -> bool:
        """Queue a report's patch; True when it joined a write that was already waiting for this device."""
        write = Write(key, device, patch, (ack,))
        with self._ready:
            older = self._pending.get(key)
            if older is None:
                self._pending[key] = write
            else:
                self._pending[key] = older.then(write)
                self.coalesced += 1
            self._ready.notify()
            return older is not None

    def take_ready(self) -> Write[A] | None:
        """The oldest waiting write of a device no writer holds and whose backoff is over (now its writer's), or
        None."""
        with self._ready:
            return self._take(self.clock())

    def take(self, timeout: float) -> Write[A] | None:
        """Like ``take_ready``, waiting up to ``timeout`` seconds for one (None also once closed)."""
        with self._ready:
            deadline = self.clock() + timeout
            while not self._closed:
                now = self.clock()
                found = self._take(now)
                if found is not None:
                    return found
                if now >= deadline:
                    return None
                backoffs = [w.not_before for k, w in self._pending.items() if k not in self._inflight]
                wake = min([deadline, *(t for t in backoffs if t > now)])
                self._ready.wait(wake - now)
            return None

    def _take(self, now: float) -> Write[A] | None:
        for key, write in self._pending.items():
            if key not in self._inflight and write.not_before <= now:
                del self._pending[key]
                self._inflight.add(key)
                return write
        return None

    def done(self, write: Write[A]) -> None:
        """``write`` is in the API server: its device may be taken again (a newer report may be waiting)."""
        self._release(write.key)

    def dropped(self, write: Write[A]) -> None:
        """``write`` will never succeed (its Device is gone, or the API server refuses it): let it go. A newer
        report that arrived meanwhile stays and is written in its turn."""
        self._release(write.key)

    def failed(self, write: Write[A]) -> float:
        """``write`` failed but may succeed later: it waits again, under any newer report (whose values win), for
        a backoff that grows with each failure in a row. Returns that backoff, in seconds."""
        failures = write.failures + 1
        delay = self.backoff(failures)
        with self._ready:
            retry = replace(write, failures=failures, not_before=self.clock() + delay)
            newer = self._pending.pop(write.key, None)
            self._pending[write.key] = retry if newer is None else retry.then(newer)
            self._inflight.discard(write.key)
            self._ready.notify()
        return delay

    def _release(self, key: Key) -> None:
        with self._ready:
            self._inflight.discard(key)
            if key in self._pending:
                self._ready.notify()

    def close(self) -> None:
        """Wake every waiting writer; ``take`` answers None from now on. What is still pending was not
        acknowledged: its nodes send it again (to whichever replica leads next)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
