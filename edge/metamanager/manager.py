"""MetaManager's logic: envelopes in, store changes and envelopes out. No network here.

From the cloud (via EdgeHub): insert/update/delete of objects, applied idempotently,
then forwarded to the module that acts on them, then acknowledged; and resync
queries, answered with what the store holds. From the node's modules: queries for
one object or a page of a kind.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from edge.errors import EdgeError
from edge.metamanager.objectstore import ObjectStore, Outcome, Stored
from edge.storage import is_storage_error
from schemas import kinds, topics
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, EnvelopeError, Group, Op, Send
from schemas.fields import STRICT, BodyError
from schemas.kubeobj import meta, named
from schemas.link import ListedItem, ListingPage, PageQuery
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

MODULE = "metamanager"
STORED_KINDS = kinds.EDGED_KINDS | kinds.DEVICETWIN_KINDS


def owner_of(kind: str) -> str | None:
    if kind in kinds.EDGED_KINDS:
        return "edged"
    if kind in kinds.DEVICETWIN_KINDS:
        return "devicetwin"
    return None


class BadObject(EdgeError, ValueError):
    """An object that cannot be stored under its key; the message says why."""


def check_object(key: ResourceKey, obj: Any) -> None:
    """The object must be a map whose metadata names the key it is sent under (a membership: any map)."""
    try:
        if key.kind == kinds.MEMBERSHIP:
            STRICT.body(obj, "object")
        else:
            named(obj, key)
    except BodyError as exc:
        raise BadObject(f"{key}: {exc.field} {exc.reason}") from None


def _item(stored: Stored, with_object: bool) -> ListedItem:
    return ListedItem(stored.key, stored.rv, stored.uid, stored.obj if with_object else None)


class MetaManager:
    def __init__(self, store: ObjectStore, node: str | None = None, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.store = store
        self.node = node
        """This node's name; with it, envelopes about another node are refused (None: not checked)."""
        self.max_size = max_size
        self.failed = 0
        """Envelopes that failed unexpectedly (a bug for that input), left for the cloud to send again."""
        self.stale = 0
        """Writes refused as older than what the store holds or last deleted (acknowledged, not applied)."""

    # -- from the cloud ------------------------------------------------------------

    def on_cloud_batch(self, envelopes: list[Envelope]) -> list[Send]:
        """Apply a burst in one transaction; forwards and acknowledgements follow the commit.

        Each envelope is applied in its own savepoint: one that fails on what it carries is rolled back alone
        and left unanswered (the cloud sends it again; ``failed`` counts it), instead of taking every other
        write of the batch down with it, again on every resend. An error of the store itself (a full disk)
        still fails the whole batch, unacknowledged.
        """
        sends: list[Send] = []
        with self.store.transaction():
            for envelope in envelopes:
                try:
                    with self.store.transaction():
                        sends.extend(self.on_cloud(envelope))
                except Exception as exc:
                    if is_storage_error(exc):
                        raise
                    self.failed += 1
                    log.exception("applying %s %s from %s failed; not acknowledged", envelope.op.value,
                                  envelope.res, envelope.src)
        return sends

    def on_cloud(self, envelope: Envelope) -> list[Send]:
        if self.node is not None and envelope.node != self.node:
            return [self._to_cloud(self._error(envelope, 403, f"this node is {self.node}, not {envelope.node}"))]
        if envelope.group == Group.META and envelope.op == Op.QUERY:
            return [self._to_cloud(self._page_reply(envelope, with_object=False))]
        if envelope.op not in (Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH) or envelope.res is None:
            return [self._to_cloud(envelope.error(MODULE, 400, f"MetaManager does not handle {envelope.op.value} "
                                                               f"{envelope.group.value} without a resource"))]
        key = envelope.res
        if key.kind not in STORED_KINDS:
            return [self._to_cloud(envelope.error(MODULE, 400, f"unknown kind {key.kind!r}; this node stores "
                                                               f"{', '.join(sorted(STORED_KINDS))}"))]
        owner = owner_of(key.kind)
        forward = Envelope(node=envelope.node, src=MODULE, group=envelope.group, op=envelope.op, res=key,
                           rv=envelope.rv, body=envelope.body)
        if owner is not None:
            # The forward carries the object with a longer id and src than the cloud's envelope: one that
            # arrived just under the size limit can be over it here. Refuse it before storing, or the store
            # would hold an object its owner never hears about.
            try:
                forward.encode(self.max_size)
            except EnvelopeError as exc:
                return [self._to_cloud(envelope.error(MODULE, 413, f"{key}: {exc.reason}"))]
        if envelope.op == Op.DELETE:
            # Any shape may arrive: a delete's body is only a hint of which incarnation (UID) to delete.
            outcome = self.store.delete(key, meta(envelope.body).uid, envelope.rv)
        else:
            try:
                check_object(key, envelope.body)
            except BadObject as exc:
                return [self._to_cloud(envelope.error(MODULE, 400, str(exc)))]
            outcome = self.store.upsert(key, envelope.rv, envelope.body)
        if outcome == Outcome.STALE:
            self.stale += 1
            log.debug("refused %s %s at resourceVersion %s from %s: the store holds or deleted a newer one",
                      envelope.op.value, key, envelope.rv, envelope.src)
        sends: list[Send] = []
        if owner is not None and outcome in (Outcome.APPLIED, Outcome.DELETED):
            sends.append(Send(topics.inbox(topics.Side.EDGE, owner), forward))
            if key.kind in kinds.DMI_KINDS:
                sends.append(Send(topics.inbox(topics.Side.EDGE, "dmi"), forward))
        sends.append(self._to_cloud(envelope.reply(MODULE, {"outcome": outcome.value})))
        return sends

    # -- from the node's modules ----------------------------------------------------

    def on_local(self, envelope: Envelope) -> list[Send]:
        """Queries: ``res`` names one object, or ``body.list`` names a kind to page through."""
        if envelope.op != Op.QUERY or envelope.group not in (Group.META, Group.RESOURCE):
            return []
        reply_to = topics.inbox(topics.Side.EDGE, envelope.src)
        if envelope.res is not None:
            stored = self.store.get(envelope.res)
            if stored is None:
                return [Send(reply_to, envelope.error(MODULE, 404, f"{envelope.res} is not stored on this node"))]
            return [Send(reply_to, envelope.reply(MODULE, _item(stored, with_object=True).as_body()))]
        return [Send(reply_to, self._page_reply(envelope, with_object=True))]

    def lookup(self, key: ResourceKey) -> Stored | None:
        return self.store.get(key)

    def remember(self, key: ResourceKey, rv: str | None, obj: Any) -> None:
        """Keep an object the cloud sent in answer to a query."""
        check_object(key, obj)
        if self.store.upsert(key, rv, obj) == Outcome.STALE:
            self.stale += 1
            log.debug("kept what the store holds or deleted for %s over the cloud's answer at %s", key, rv)

    # -- helpers ----------------------------------------------------------------------

    def _page_reply(self, envelope: Envelope, *, with_object: bool) -> Envelope:
        try:
            query = PageQuery.parse(envelope.body)
        except BodyError as exc:
            return envelope.error(MODULE, 400, str(exc))
        items, nxt = self.store.page(query.kind, query.after, query.limit)
        return envelope.reply(MODULE, ListingPage(tuple(_item(s, with_object) for s in items), nxt).as_body())

    def _error(self, envelope: Envelope, code: int, reason: str) -> Envelope:
        """An error for the cloud, about this node whatever the refused envelope named: EdgeHub sends up only
        what concerns its own node."""
        error = envelope.error(MODULE, code, reason)
        return replace(error, node=self.node) if self.node is not None else error

    @staticmethod
    def _to_cloud(envelope: Envelope) -> Send:
        return Send(topics.to_cloud(), envelope)
