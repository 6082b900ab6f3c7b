"""List, then watch from the list's resourceVersion; keep a cache; list again on 410 Gone.

Each kind runs in its own thread and reports changes as (type, object) events; a
relist after 410 is turned into the events that reconcile the cache with the new
list, so the controller never sees a gap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cloud.kube import Gone, Kube, KubeError, WatchIdle
from cloud.packed import Packed, slim
from runtime.backoff import Backoff
from schemas.kubeobj import meta

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, dict[str, Any], Packed], None]
"""(kind, ADDED|MODIFIED|DELETED, object, the same object as the cache keeps it)"""


def object_key(obj: dict[str, Any]) -> tuple[str, str]:
    found = meta(obj)
    return found.namespace or "-", found.name or ""


def resource_version(obj: dict[str, Any]) -> str:
    return meta(obj).resource_version or ""


class Informer:
    """``namespace`` and ``label_selector`` narrow what is listed and watched; ``read_timeout_s`` watches again
    (from the same resourceVersion, without a word) when nothing came for that long, so that a connection that
    died silently is noticed; ``on_current`` is called after each listing and each event, bookmarks included:
    the cache is then known to be current as of that moment (LeaseWatch, cloud/replicas/leasewatch.py)."""

    def __init__(self, kube: Kube, kind: str, sink: EventSink, *, watch_timeout_s: int = 300,
                 namespace: str | None = None, label_selector: str | None = None,
                 read_timeout_s: float | None = None, on_current: Callable[[], None] | None = None) -> None:
        self.kube = kube
        self.kind = kind
        self.sink = sink
        self.watch_timeout_s = watch_timeout_s
        self.namespace = namespace
        self.label_selector = label_selector
        self.read_timeout_s = read_timeout_s
        self._on_current = on_current
        self.synced = threading.Event()
        self.relists = 0
        self._cache: dict[tuple[str, str], Packed] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A decoded copy of the cached object."""
        with self._lock:
            packed = self._cache.get((namespace or "-", name))
        return None if packed is None else packed.obj()

    def _run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    rv = self._relist()
                for kind, obj in self.kube.watch(self.kind, rv, self.watch_timeout_s, **self._scope(),
                                                 read_timeout_s=self.read_timeout_s):
                    if self._stop.is_set():
                        return
                    rv = resource_version(obj) or rv
                    if kind != "BOOKMARK":
                        self._apply(kind, obj)
                    if self._on_current is not None:
                        self._on_current()
                backoff.reset()
            except WatchIdle:
                log.debug("%s watch quiet for %s s: watching again", self.kind, self.read_timeout_s)
                backoff.reset()
            except Gone:
                log.info("%s watch expired (410): listing again", self.kind)
                rv = ""
            except KubeError as exc:
                delay = backoff.next()
                log.warning("%s list/watch failed (%s); retrying in %.1f s", self.kind, exc, delay)
                self._stop.wait(delay)

    def _scope(self) -> dict[str, str]:
        scope = {} if self.namespace is None else {"namespace": self.namespace}
        if self.label_selector is not None:
            scope["label_selector"] = self.label_selector
        return scope

    def _relist(self) -> str:
        items, rv = self.kube.list(self.kind, **self._scope())
        fresh = {object_key(o): (slim(o), Packed.of(o)) for o in items}
        del items
        with self._lock:
            old = self._cache
            self._cache = {key: packed for key, (_, packed) in fresh.items()}
        for key, (obj, packed) in fresh.items():
            before = old.get(key)
            if before is None:
                self.sink(self.kind, "ADDED", obj, packed)
            elif before.rv != packed.rv:
                self.sink(self.kind, "MODIFIED", obj, packed)
        for key, gone in old.items():
            if key not in fresh:
                self.sink(self.kind, "DELETED", gone.obj(), gone)
        self.relists += 1
        self.synced.set()
        if self._on_current is not None:
            self._on_current()
        log.info("listed %d %s objects at resourceVersion %s; watching", len(fresh), self.kind, rv)
        return rv

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        packed = Packed.of(slim(obj))
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = packed
        self.sink(self.kind, kind, obj, packed)
