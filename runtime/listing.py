"""Reading a listing of MetaManager's store over the bus, page by page: what a controller resynchronising a
node (through CloudHub) and a node's own modules (EdgeD, DeviceTwin) both do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from runtime.bus import Bus
from schemas.envelope import Group, Op
from schemas.fields import BodyError
from schemas.link import ListedItem, ListingPage, PageQuery


def listing(bus: Bus, topic: str, kind: str, *, limit: int, timeout: float,
            node: str | None = None, src: str | None = None) -> Iterator[ListedItem]:
    """Every stored object of ``kind``, in key order, asking ``topic`` for ``limit`` at a time.

    ``node``: the node whose store is listed (default: the bus's own). ``src``: whom the queries are from
    (default: the bus's module); CloudHub sends a node's answer to the inbox of that name, so one of several
    replicas of a controller names itself (topics.replica_module) to have its answers to itself, not decoded by
    every replica. The caller subscribes to that inbox. Raises RequestTimeout or RequestError
    when an answer does not come or is an error, and BodyError when a page is not one, or would not move the
    listing forward (it would never end).
    """
    after = ""
    while True:
        query = bus.envelope(Group.META, Op.QUERY, body=PageQuery(kind, after, limit).as_body(),
                             node=node or bus.settings.node)
        if src is not None:
            query = replace(query, src=src)
        page = ListingPage.parse(bus.request(topic, query, timeout=timeout).body)
        yield from page.items
        if page.next_after is None:
            return
        if page.next_after <= after:
            raise BodyError("body.next", "must come after the page it follows")
        after = page.next_after
