"""The envelope: the one message format on every internal and link topic.

A frozen dataclass with a msgpack codec. ``decode`` validates every field and names
the bad one, so a receiver can drop garbage with a useful log line instead of
failing somewhere deep in its own logic.
"""

from __future__ import annotations

import re
import reprlib
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import msgpack

from schemas.errors import WireFormatError
from schemas.fields import LENIENT
from schemas.names import is_module_name, is_node_name
from schemas.resource import ResourceKey, ResourceKeyError

VERSION = 1
DEFAULT_MAX_SIZE = 1024 * 1024
"""Largest encoded envelope accepted, in bytes (1 MiB); receivers may set their own."""

_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_MAX_RV_LEN = 64


class Group(StrEnum):
    RESOURCE = "resource"
    TWIN = "twin"
    META = "meta"
    HUB = "hub"
    BUS = "bus"
    USER = "user"


class Op(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    PATCH = "patch"
    QUERY = "query"
    RESPONSE = "response"
    ERROR = "error"
    KEEPALIVE = "keepalive"
    UPLOAD = "upload"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    BATCH = "batch"
    """Group ``hub``: many envelopes in one message on the link (schemas/batch.py); sent only to a peer that
    said it takes them, since a receiver of the previous version refuses the op."""


class EnvelopeError(WireFormatError):
    """An envelope that cannot be accepted; ``field`` names what is wrong with it."""

    def __init__(self, field: str, reason: str) -> None:
        # Both can come from the sender (an unknown key, a bad resource key) and be up to a MiB long;
        # they go into log lines and error replies, so they are clipped.
        field, reason = _clip(field, 64), _clip(reason, 300)
        super().__init__(f"envelope field {field!r}: {reason}")
        self.field = field
        self.reason = reason


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def new_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message. ``res`` and ``rv`` are absent for messages about no particular object."""

    node: str
    src: str
    group: Group
    op: Op
    res: ResourceKey | None = None
    body: Any = None
    rv: str | None = None
    parent: str | None = None
    id: str = field(default_factory=new_id)
    ts: int = field(default_factory=now_ms)
    v: int = VERSION

    def reply(self, src: str, body: Any = None, *, op: Op = Op.RESPONSE) -> Envelope:
        """A new envelope answering this one (``parent`` = this id), about the same object."""
        return Envelope(node=self.node, src=src, group=self.group, op=op, res=self.res, body=body,
                        rv=self.rv, parent=self.id)

    def error(self, src: str, code: int, reason: str) -> Envelope:
        """An ``error`` reply; ``code`` follows HTTP (400 bad input, 404 unknown, 409 conflict, 500)."""
        return self.reply(src, ErrorBody(code, reason).as_body(), op=Op.ERROR)

    def with_body(self, body: Any) -> Envelope:
        return replace(self, body=body)

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": self.v, "id": self.id, "ts": self.ts, "node": self.node, "src": self.src,
                               "group": self.group.value, "op": self.op.value}
        if self.parent is not None:
            out["parent"] = self.parent
        if self.res is not None:
            out["res"] = str(self.res)
        if self.rv is not None:
            out["rv"] = self.rv
        if self.body is not None:
            out["body"] = self.body
        return out

    def encode(self, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """msgpack bytes; raises EnvelopeError when the result would be refused by a receiver."""
        try:
            data: bytes = msgpack.packb(self.to_map(), use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EnvelopeError("body", f"cannot be encoded as msgpack: {exc}") from exc
        if len(data) > max_size:
            raise EnvelopeError("body", f"encoded envelope is {len(data)} bytes, over the {max_size}-byte limit")
        return data


_FIELDS = frozenset({"v", "id", "parent", "ts", "node", "src", "group", "op", "res", "rv", "body"})
FIELDS = _FIELDS
"""Every field an envelope may carry; an EnvelopeError's ``field`` is one of these, ``payload``, or an unknown key."""
_REQUIRED = ("v", "id", "ts", "node", "src", "group", "op")


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Parse and validate one envelope; raise EnvelopeError (only) when it is not acceptable."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EnvelopeError("payload", f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise EnvelopeError("payload", f"{len(data)} bytes is over the {max_size}-byte limit")
    raw = _unpack(data)
    return from_map(raw)


def _unpack(data: bytes | bytearray | memoryview) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage; all mean the same
        raise EnvelopeError("payload", f"not a msgpack value ({type(exc).__name__}: {exc})") from None


def from_map(raw: Any) -> Envelope:
    """Validate a decoded msgpack map as an envelope."""
    if not isinstance(raw, dict):
        raise EnvelopeError("payload", f"expected a msgpack map, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        raise EnvelopeError(unknown[0], "unknown field")
    for name in _REQUIRED:
        if name not in raw:
            raise EnvelopeError(name, "missing")
    if type(raw["v"]) is not int or raw["v"] != VERSION:
        raise EnvelopeError("v", f"unsupported envelope version {_short(raw['v'])} (this side speaks {VERSION})")
    _check_id("id", raw["id"])
    if raw.get("parent") is not None:
        _check_id("parent", raw["parent"])
    ts = raw["ts"]
    if type(ts) is not int or not 0 <= ts < 2**63:
        raise EnvelopeError("ts", f"expected milliseconds since the epoch, got {_short(ts)}")
    if not is_node_name(raw["node"]):
        raise EnvelopeError("node", f"{_short(raw['node'])} is not a valid node name")
    if not is_module_name(raw["src"]):
        raise EnvelopeError("src", f"{_short(raw['src'])} is not a valid module name")
    # Only strings reach the enums: Enum's own error message is a plain repr() of the value, which raises
    # RecursionError for a list nested ~1000 deep (msgpack decodes up to 1024 levels).
    try:
        group = Group(raw["group"] if isinstance(raw["group"], str) else "")
    except ValueError:
        raise EnvelopeError("group", f"{_short(raw['group'])} is not one of {[g.value for g in Group]}") from None
    try:
        op = Op(raw["op"] if isinstance(raw["op"], str) else "")
    except ValueError:
        raise EnvelopeError("op", f"{_short(raw['op'])} is not one of {[o.value for o in Op]}") from None
    res = None
    if raw.get("res") is not None:
        try:
            res = ResourceKey.parse(raw["res"])
        except ResourceKeyError as exc:
            raise EnvelopeError("res", str(exc)) from None
    rv = raw.get("rv")
    if rv is not None and (not isinstance(rv, str) or not 0 < len(rv) <= _MAX_RV_LEN):
        raise EnvelopeError("rv", f"expected a resourceVersion string, got {_short(rv)}")
    return Envelope(node=raw["node"], src=raw["src"], group=group, op=op, res=res, body=raw.get("body"), rv=rv,
                    parent=raw.get("parent"), id=raw["id"], ts=ts, v=raw["v"])


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise EnvelopeError(name, f"{_short(value)} is not a message id (1-64 of A-Z a-z 0-9 . _ : -)")


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60


def _short(value: Any) -> str:
    """A bounded repr of a refused value for the error message.

    Plain ``repr`` recurses into whatever the sender nested: msgpack decodes up to 1024 levels, and a field
    nested ~1000 deep makes ``repr`` raise RecursionError, which would escape decode() instead of
    EnvelopeError. reprlib stops at a few levels and a few dozen characters.
    """
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class Salvage:
    """What can be read from an invalid envelope to tell its sender why it was refused."""

    id: str
    src: str
    node: str | None


def salvage(data: bytes) -> Salvage | None:
    """The id and sender of a payload that failed validation, when they are themselves valid."""
    try:
        raw = _unpack(data)
    except EnvelopeError:
        return None
    if not isinstance(raw, dict):
        return None
    msg_id, src, node = raw.get("id"), raw.get("src"), raw.get("node")
    if not (isinstance(msg_id, str) and _ID.fullmatch(msg_id) and isinstance(src, str) and is_module_name(src)):
        return None
    return Salvage(msg_id, src, node if is_node_name(node) else None)


@dataclass(frozen=True, slots=True)
class Send:
    """An envelope and the topic it goes to: what component logic returns for the runtime to publish, at ``qos``
    (1 but where the sender has said otherwise: CloudHub's ``--down-qos``)."""

    topic: str
    envelope: Envelope
    qos: int = 1


@dataclass(slots=True)
class RawSend:
    """Bytes for a topic that does not carry envelopes (device JSON), with their QoS and retain flag. Not changed
    once made, but not frozen: EventBus makes two per device update, and a frozen dataclass sets each field
    through ``object.__setattr__`` (three times the time)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The body of an ``error`` envelope: an HTTP-like code and the reason, for the asker and its log."""

    code: int
    reason: str

    def as_body(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason}

    @classmethod
    def read(cls, body: Any) -> ErrorBody:
        """Never refuses: an error is already the end of a request, so a body of another shape reads as
        500 with no reason given rather than raising a second error about the first."""
        found = LENIENT.body(body)
        return cls(LENIENT.integer(found.get("code"), "body.code") or 500,
                   LENIENT.text(found.get("reason"), "body.reason") or "no reason given")
