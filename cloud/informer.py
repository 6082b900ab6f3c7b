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

from cloud.kube import Gone, Kube, KubeError
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
    def __init__(self, kube: Kube, kind: str, sink: EventSink, *, watch_timeout_s: int = 300) -> None:
        self.kube = kube
        self.kind = kind
        self.sink = sink
        self.watch_timeout_s = watch_timeout_s
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
                for kind, obj in self.kube.watch(self.kind, rv, self.watch_timeout_s):
                    if self._stop.is_set():
                        return
                    rv = resource_version(obj) or rv
                    if kind == "BOOKMARK":
                        continue
                    self._apply(kind, obj)
                backoff.reset()
            except Gone:
                log.info("%s watch expired (410): listing again", self.kind)
                rv = ""
            except KubeError as exc:
                delay = backoff.next()
                log.warning("%s list/watch failed (%s); retrying in %.1f s", self.kind, exc, delay)
                self._stop.wait(delay)

    def _relist(self) -> str:
        items, rv = self.kube.list(self.kind)
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
