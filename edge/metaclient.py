"""Reading MetaManager's store from another edge module: everything of a kind, page by page."""

from __future__ import annotations

from typing import Any

from runtime.bus import Bus
from schemas import topics
from schemas.envelope import Group, Op
from schemas.resource import ResourceKey

METAMANAGER = topics.inbox(topics.Side.EDGE, "metamanager")


def list_objects(bus: Bus, kind: str, timeout: float = 5.0) -> dict[ResourceKey, dict[str, Any]]:
    """Every stored object of ``kind``; raises RequestTimeout/RequestError when MetaManager does not answer."""
    out: dict[ResourceKey, dict[str, Any]] = {}
    after: str | None = ""
    while after is not None:
        query = bus.envelope(Group.META, Op.QUERY, body={"list": kind, "after": after, "limit": 200})
        reply = bus.request(METAMANAGER, query, timeout=timeout)
        body = reply.body if isinstance(reply.body, dict) else {}
        for item in body.get("items") or []:
            out[ResourceKey.parse(item["key"])] = item["object"]
        after = body.get("next")
    return out
