"""Named event counters shared between a component's threads (messages, drops, errors)."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Thread-safe counters; ``snapshot()`` gives a plain dict for status replies and logs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
