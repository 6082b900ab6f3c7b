"""Reading MetaManager's store from another edge module: everything of a kind, page by page."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from runtime.bus import Bus
from runtime.listing import listing
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import Envelope, Send
from schemas.fields import BodyError
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

METAMANAGER = topics.inbox(topics.Side.EDGE, "metamanager")
PAGE = 200


def list_objects(bus: Bus, kind: str, timeout: float = 5.0) -> dict[ResourceKey, dict[str, Any]]:
    """Every stored object of ``kind``; raises RequestTimeout/RequestError when MetaManager does not answer,
    BodyError when its answer is not a listing of objects."""
    out: dict[ResourceKey, dict[str, Any]] = {}
    for item in listing(bus, METAMANAGER, kind, limit=PAGE, timeout=timeout):
        if item.object is None:
            raise BodyError("body.items[].object", f"missing for {item.key}: a module's listing carries objects")
        out[item.key] = item.object
    return out


class MetaManagerRestarts:
    """Calls ``on_restart`` whenever MetaManager is up with a process not seen before: at this module's start
    (its retained status) and after each restart of MetaManager, when a forward to this module may have been lost.
    Subscribe ``on_status`` to ``topics.status("metamanager")``."""

    def __init__(self, bus: Bus, on_restart: Callable[[], None]) -> None:
        self.bus = bus
        self.on_restart = on_restart
        self.pid: object = None

    def on_status(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        try:
            status = ComponentStatus.parse(envelope.body)
        except BodyError as exc:
            self.bus.counters.inc("refused")
            log.warning("refused the status of %s: %s", envelope.src, exc)
            return None
        if status.up and status.pid != self.pid:
            self.pid = status.pid
            self.on_restart()
        return None
