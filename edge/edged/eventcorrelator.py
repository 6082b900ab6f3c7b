"""kubelet's event correlator, as client-go's recorder runs it: aggregate, dedupe, spam filter. No I/O, no threads:
the clock comes in.

- Aggregation: events alike but for their message (same object, type and reason) seen more than
  ``max_similar`` (10) times with different messages within ``similar_window_s`` (10 min) become one Event
  whose message starts "(combined from similar events): ", counted as repeats of each other.
- Dedupe: an event identical to one seen before (same object and field path, type, reason, message,
  source) is a repeat: the same Event (its name and firstTimestamp kept) with its count one higher and
  a new lastTimestamp. The memory of what was seen is an LRU of ``cache_size`` (4096) keys.
- Spam filter: a token bucket per source and object, ``burst`` (25) tokens refilled one per
  ``refill_s`` (300 s). An event with no token left is not sent; its count still grew, so the next one sent
  of the same key carries every repeat (this is how a kubelet's BackOff shows x300 with few writes).

``observe`` also takes ``every_s``: an identical event observed again sooner than that is not counted at all.
kubelet records a back-off at each sync of the pod, roughly every 10 s; EdgeD passes over its pods every
second, and counting each pass would make counts ten times a kubelet's and spend the object's spam tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.events import KubeEvent, ObjectRef, clip_message
from schemas.timefmt import rfc3339

COMBINED = "(combined from similar events): "
CACHE_SIZE = 4096
MAX_SIMILAR = 10
SIMILAR_WINDOW_S = 600.0
BURST = 25
REFILL_S = 300.0

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A bounded map that forgets the least recently used key first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Occurrence:
    """What a hook records: something happened to an object."""

    involved: ObjectRef
    type: str
    reason: str
    message: str


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Seen:
    name: str
    first: float
    count: int
    last: float


@dataclass
class _Bucket:
    tokens: float
    at: float


def _object_key(ref: ObjectRef) -> tuple[str | None, ...]:
    return (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version)


class Correlator:
    def __init__(self, host: str, *, cache_size: int = CACHE_SIZE, max_similar: int = MAX_SIMILAR,
                 similar_window_s: float = SIMILAR_WINDOW_S, burst: int = BURST, refill_s: float = REFILL_S) -> None:
        self.host = host
        self.max_similar = max_similar
        self.similar_window_s = similar_window_s
        self.burst = burst
        self.refill_s = refill_s
        self._similar: Lru[tuple[str | None, ...], _Similar] = Lru(cache_size)
        self._seen: Lru[tuple[str | None, ...], _Seen] = Lru(cache_size)
        self._buckets: Lru[tuple[str | None, ...], _Bucket] = Lru(cache_size)
        self._last_nanos = 0
        self.filtered = 0
        """Events the spam filter held back (their count went into the next one sent)."""

    def observe(self, occurrence: Occurrence, now: float, *, every_s: float = 0.0) -> KubeEvent | None:
        """The Event to send for ``occurrence`` at ``now`` (seconds since the epoch), or None when it is not
        to be sent (the spam filter, or ``every_s``)."""
        ref = occurrence.involved
        message = clip_message(occurrence.message)
        similar_key = (*_object_key(ref), occurrence.type, occurrence.reason)
        exact_key = (*similar_key, ref.field_path, message)
        if every_s > 0:
            seen = self._seen.get(exact_key)
            if seen is not None and now - seen.last < every_s:
                return None
        key = exact_key
        similar = self._similar.get(similar_key)
        if similar is None or now - similar.last > self.similar_window_s:
            similar = _Similar()
            self._similar.put(similar_key, similar)
        similar.messages.add(message)
        similar.last = now
        if len(similar.messages) > self.max_similar:
            message = clip_message(COMBINED + message)
            key = similar_key
        seen = self._seen.get(key)
        if seen is None:
            # kubelet's name: the object's and the time in nanoseconds, here never the same twice (two events
            # recorded in one tick of a coarse clock would otherwise be one Event).
            self._last_nanos = max(int(now * 1e9), self._last_nanos + 1)
            seen = _Seen(f"{ref.name}.{self._last_nanos:x}", now, 0, now)
            self._seen.put(key, seen)
        seen.count += 1
        seen.last = now
        if not self._allow(_object_key(ref), now):
            self.filtered += 1
            return None
        return KubeEvent(seen.name, ref.namespace or "default", ref, occurrence.type, occurrence.reason, message,
                         self.host, rfc3339(seen.first), rfc3339(now), seen.count)

    def _allow(self, key: tuple[str | None, ...], now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets.put(key, bucket)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.refill_s)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
