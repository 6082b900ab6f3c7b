"""Reading a listing of MetaManager's store over the bus, page by page: what a controller resynchronising a
node (through CloudHub) and a node's own modules (EdgeD, DeviceTwin) both do."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from runtime.bus import Asked, Bus
from schemas.envelope import Envelope, Group, Op
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
    yield from _pages(bus, topic, kind, limit=limit, timeout=timeout, node=node, src=src)


def listings(bus: Bus, topic: str, kinds: Iterable[str], *, limit: int, timeout: float,
             node: str | None = None, src: str | None = None,
             resend_after: float | None = None) -> Iterator[ListedItem]:
    """Every stored object of each of ``kinds``, kind after kind, as :func:`listing` gives them; but the first
    page of every kind is asked for at once, so a store whose kinds each fit in one page is listed in one round
    trip, not one per kind (a controller's resync lists five kinds: over a slow link, or a broker that writes
    each message to disk, those round trips were most of a node's resync). Each answer is still waited for
    ``timeout`` at most, counted from when it was asked, and asked again (``Bus.ask``'s ``resend_after``) if it
    has not come by then. Further pages follow one at a time."""
    asked: list[tuple[str, Asked]] = []
    try:
        for kind in kinds:
            asked.append((kind, bus.ask(topic, _query(bus, kind, "", limit, node, src), timeout=timeout,
                                        resend_after=resend_after)))
        for kind, first in asked:
            yield from _pages(bus, topic, kind, limit=limit, timeout=timeout, node=node, src=src, first=first,
                              resend_after=resend_after)
    finally:
        for _kind, first in asked:  # a listing given up on: its other answers are not waited for
            first.forget()


def _query(bus: Bus, kind: str, after: str, limit: int, node: str | None, src: str | None) -> Envelope:
    query = bus.envelope(Group.META, Op.QUERY, body=PageQuery(kind, after, limit).as_body(),
                         node=node or bus.settings.node)
    return query if src is None else replace(query, src=src)


def _pages(bus: Bus, topic: str, kind: str, *, limit: int, timeout: float, node: str | None, src: str | None,
           first: Asked | None = None, resend_after: float | None = None) -> Iterator[ListedItem]:
    """The pages of ``kind`` from the start; ``first``: its first page, already asked for."""
    after = ""
    while True:
        if first is None:
            reply = bus.request(topic, _query(bus, kind, after, limit, node, src), timeout=timeout,
                                resend_after=resend_after)
        else:
            reply, first = first.answer(), None
        page = ListingPage.parse(reply.body)
        yield from page.items
        if page.next_after is None:
            return
        if page.next_after <= after:
            raise BodyError("body.next", "must come after the page it follows")
        after = page.next_after
