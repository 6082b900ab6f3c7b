"""The bodies of the link protocol, read and written in one place: keepalives, link and session news, and the
paged listing of a node's store that a resync is built on.

Each is a frozen dataclass with ``parse(body)``, which refuses a body that is not what the
protocol says with a BodyError naming the field, and ``as_body()``, which writes exactly
what the protocol says. The wire format is fixed by nodes already in the field: the same
keys and values as before these types existed. Keys a body has beyond its fields are
ignored, so that a newer sender can add one without an older receiver refusing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from schemas.envelope import Op
from schemas.fields import BodyError, shape
from schemas.resource import ResourceKey, ResourceKeyError

MAX_PAGE = 500
"""The most items one listing page may ask for: a page of keys, versions and UIDs stays far under the
envelope's size limit, and a page of objects is what a module asks for at a time."""
DEFAULT_PAGE = 200


def _map(body: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BodyError(field, f"must be a map, not {shape(body)}")
    return body


def _optional_str(body: dict[str, Any], key: str, field: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BodyError(field, f"must be a string, not {shape(value)}")
    return value


def _state(body: dict[str, Any], names: tuple[str, str], field: str = "body.state") -> bool | None:
    """``names[0]`` (True), ``names[1]`` (False) or absent (None)."""
    value = body.get("state")
    if value is None:
        return None
    if not isinstance(value, str) or value not in names:
        raise BodyError(field, f"must be {names[0]!r} or {names[1]!r}")
    return value == names[0]


def _check_op(up: bool | None, op: Op, names: tuple[str, str]) -> None:
    """A body whose state repeats the envelope's op (connected or disconnected) must agree with it."""
    if op not in (Op.CONNECTED, Op.DISCONNECTED):
        raise BodyError("op", f"must be {Op.CONNECTED.value} or {Op.DISCONNECTED.value}, not {op.value}")
    if up is not None and up != (op == Op.CONNECTED):
        raise BodyError("body.state", f"says {names[0] if up else names[1]!r} but the envelope's op is {op.value}")


def _batch_bytes(body: dict[str, Any]) -> int | None:
    """``batch_bytes`` of a keepalive, its answer or a session announcement: the largest batch (schemas/batch.py)
    one side takes, or None when it takes none."""
    batch_bytes = body.get("batch_bytes")
    if batch_bytes is not None and (type(batch_bytes) is not int or not 0 < batch_bytes < 2**32):
        raise BodyError("body.batch_bytes", "must be a positive whole number of bytes")
    return batch_bytes


@dataclass(frozen=True)
class Keepalive:
    """EdgeHub's keepalive: ``{"outbox": n}``, the entries its outbox still holds, so that the cloud can show
    what a node has yet to say; and ``"batch_bytes"``, the largest batch (schemas/batch.py) the node accepts,
    from a node that takes batches at all. The hello EdgeHub sends the moment its link comes up carries only
    ``batch_bytes`` (a node of the previous version sends no body). A cloud of the previous version ignores
    ``batch_bytes`` (keys beyond a body's fields are ignored) and never sends a batch."""

    outbox: int | None = None
    batch_bytes: int | None = None

    @classmethod
    def parse(cls, body: Any) -> Self:
        if body is None:
            return cls()
        body = _map(body)
        outbox = body.get("outbox")
        if outbox is not None and (type(outbox) is not int or outbox < 0):
            raise BodyError("body.outbox", "must be a whole number of entries")
        return cls(outbox, _batch_bytes(body))

    def as_body(self) -> dict[str, Any] | None:
        body: dict[str, Any] = {}
        if self.outbox is not None:
            body["outbox"] = self.outbox
        if self.batch_bytes is not None:
            body["batch_bytes"] = self.batch_bytes
        return body or None


@dataclass(frozen=True)
class KeepaliveAnswer:
    """CloudHub's answer (``hub response``, ``parent`` = the keepalive's id) to the hello and keepalives of a node
    that takes batches: ``{"batch_bytes": n}``, the largest batch (schemas/batch.py) the cloud accepts up the
    link; no ``batch_bytes``: it takes none. The permission is for the CloudHub that answers now, so a node
    forgets it when its answers stop (a cloud of the previous version never answers a keepalive: its nodes keep
    one envelope per message, as an older EdgeHub does, which ignores a hub answer it did not ask for)."""

    batch_bytes: int | None = None

    @classmethod
    def parse(cls, body: Any) -> Self:
        if body is None:
            return cls()
        body = _map(body)
        return cls(_batch_bytes(body))

    def as_body(self) -> dict[str, Any]:
        return {} if self.batch_bytes is None else {"batch_bytes": self.batch_bytes}


@dataclass(frozen=True)
class LinkChange:
    """Why a link came or went, the envelope's op (connected or disconnected) saying which way.

    Two senders: the bridge, on the node's link-state topic and as its will on the up topic
    (``{"state": "up" | "down", "reason"}``), and EdgeHub, in its retained cloud-link
    announcement to the node's modules (``{"reason"}``).
    """

    reason: str = ""
    up: bool | None = None
    """The bridge's ``state``, which repeats the op; None where the body has none."""

    NAMES: ClassVar[tuple[str, str]] = ("up", "down")

    @classmethod
    def parse(cls, body: Any) -> Self:
        if body is None:
            return cls()
        body = _map(body)
        return cls(_optional_str(body, "reason", "body.reason") or "", _state(body, cls.NAMES))

    def check_op(self, op: Op) -> None:
        """Raise BodyError unless ``op`` is connected or disconnected and agrees with ``up``."""
        _check_op(self.up, op, self.NAMES)

    def as_body(self) -> dict[str, Any]:
        if self.up is None:
            return {"reason": self.reason}
        return {"state": self.NAMES[0] if self.up else self.NAMES[1], "reason": self.reason}


@dataclass(frozen=True)
class SessionNews:
    """CloudHub's retained announcement of a node's session: ``{"session": id, "state": "connected" |
    "disconnected"}``, and ``"replica"`` when one of several CloudHub replicas serves the node. The id is new
    for every session, so a controller resynchronises a node once per session however often the announcement
    reaches it; the replica says which one holds the session, for people and tests reading the topic.
    ``"batch_bytes"``: the CloudHub that holds the session takes the node's objects from a controller in batches
    (schemas/batch.py) of up to that many bytes on its inbox; absent (a CloudHub of the previous version, or
    batches off), a controller sends it one envelope per object. A controller of the previous version ignores
    the key."""

    session: str
    connected: bool
    replica: str | None = None
    batch_bytes: int | None = None

    NAMES: ClassVar[tuple[str, str]] = ("connected", "disconnected")

    @classmethod
    def parse(cls, body: Any) -> Self:
        body = _map(body)
        session = body.get("session")
        if not isinstance(session, str) or not session:
            raise BodyError("body.session", "must be a session id")
        connected = _state(body, cls.NAMES)
        if connected is None:
            raise BodyError("body.state", "missing")
        return cls(session, connected, _optional_str(body, "replica", "body.replica"), _batch_bytes(body))

    @property
    def op(self) -> Op:
        return Op.CONNECTED if self.connected else Op.DISCONNECTED

    def check_op(self, op: Op) -> None:
        """Raise BodyError unless ``op`` is the one this announcement is sent with."""
        _check_op(self.connected, op, self.NAMES)

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"session": self.session,
                                "state": self.NAMES[0] if self.connected else self.NAMES[1]}
        if self.replica is not None:
            body["replica"] = self.replica
        if self.batch_bytes is not None:
            body["batch_bytes"] = self.batch_bytes
        return body


@dataclass(frozen=True)
class PageQuery:
    """A page of a listing of MetaManager's store: ``{"list": kind, "after": key, "limit": n}``.

    Keys in order after ``after`` ("" for the first page); no ``list``: every kind. The
    cloud asks for keys and versions when a node's session starts (cloud/nodesync.py); a
    node's modules ask for whole objects (edge/metaclient.py).
    """

    kind: str | None = None
    after: str = ""
    limit: int = DEFAULT_PAGE

    @classmethod
    def parse(cls, body: Any) -> Self:
        if body is None:
            return cls()
        body = _map(body)
        kind = _optional_str(body, "list", "body.list")
        after = _optional_str(body, "after", "body.after")
        limit = body.get("limit")
        if limit is None:
            limit = DEFAULT_PAGE
        elif type(limit) is not int or not 0 < limit <= MAX_PAGE:
            raise BodyError("body.limit", f"must be a whole number from 1 to {MAX_PAGE}")
        return cls(kind, after or "", limit)

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"list": self.kind} if self.kind is not None else {}
        return {**body, "after": self.after, "limit": self.limit}


@dataclass(frozen=True)
class ListedItem:
    """One stored object in a listing page: its key, resourceVersion and UID, and the object itself when the
    query asked for objects (``{"key", "rv", "uid", "object"?}``)."""

    key: ResourceKey
    rv: str
    uid: str | None
    object: dict[str, Any] | None = None

    @classmethod
    def parse(cls, item: Any, field: str) -> Self:
        item = _map(item, field)
        try:
            key = ResourceKey.parse(item.get("key"))
        except ResourceKeyError as exc:
            raise BodyError(f"{field}.key", str(exc)) from None
        rv = item.get("rv")
        if not isinstance(rv, str):
            raise BodyError(f"{field}.rv", f"must be a resourceVersion string, not {shape(rv)}")
        uid = _optional_str(item, "uid", f"{field}.uid")
        obj = item.get("object")
        if obj is not None and not isinstance(obj, dict):
            raise BodyError(f"{field}.object", f"must be a map, not {shape(obj)}")
        return cls(key, rv, uid, obj)

    def as_body(self) -> dict[str, Any]:
        item: dict[str, Any] = {"key": str(self.key), "rv": self.rv, "uid": self.uid}
        if self.object is not None:
            item["object"] = self.object
        return item


@dataclass(frozen=True)
class ListingPage:
    """MetaManager's answer to a PageQuery: ``{"items": [...], "next": key | null}``; ``next_after`` is where
    the next page starts (the ``after`` of the next query), None on the last page."""

    items: tuple[ListedItem, ...]
    next_after: str | None

    @classmethod
    def parse(cls, body: Any) -> Self:
        body = _map(body)
        raw = body.get("items")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise BodyError("body.items", f"must be a list, not {shape(raw)}")
        items = tuple(ListedItem.parse(item, f"body.items[{i}]") for i, item in enumerate(raw))
        return cls(items, _optional_str(body, "next", "body.next"))

    def as_body(self) -> dict[str, Any]:
        return {"items": [item.as_body() for item in self.items], "next": self.next_after}
