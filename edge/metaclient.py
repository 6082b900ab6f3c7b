"""Reading MetaManager's store from another edge module: everything of a kind, page by page."""

from __future__ import annotations

from typing import Any

from runtime.bus import Bus
from runtime.listing import listing
from schemas import topics
from schemas.fields import BodyError
from schemas.resource import ResourceKey

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
