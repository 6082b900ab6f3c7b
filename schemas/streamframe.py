"""The frames of a stream tunnelled over a node's link: one msgpack map per MQTT message.

A stream is one kubelet request from the API server (``/containerLogs`` now; exec, attach and
port-forward ride the same frames next), carried between the cloud stream server and the node's
stream end on the node's own stream topics (``edgehive/link/<node>/stream/{down,up}``, see
schemas/topics.py). They are not the resource envelope of ARCHITECTURE.md on purpose: streams take no part
in the delivery protocol (no outbox, no resend, nothing stored), and a data frame is on the hot path.

Frames (``k``):

- ``open``: cloud to edge; ``req`` is the request (schemas/streamrequest.py), ``credit`` the bytes the
  edge may send before it hears more (the receiver's window).
- ``data``: either way; ``seq`` counts the data frames of one direction from 0, so a lost frame is
  seen (the stream then fails) instead of leaving a silent hole in a log. ``ch`` is the channel the bytes
  belong to, numbered as the remotecommand protocol numbers them (0 stdin, 1 stdout, 2 stderr, 4 resize);
  a log is channel 1; a forwarded connection's bytes are 0 to the node and 1 from it, as stdin and
  stdout. An empty data frame ends its channel (stdin's EOF).
  Channels share their stream's credit and sequence rather than being streams of their own: an exec is one
  kubectl command, so it counts once against a node's cap on streams, and stdout and stderr keep the order
  in which the command wrote them; the cost is that a reader that stops reading stderr also stops stdout,
  which a terminal reader of both never does.
- ``credit``: the receiver consumed ``credit`` more bytes; the sender may send that many more. A sender
  with no credit waits, so a slow reader holds back the source instead of filling memory on either side.
- ``close``: the sender has nothing more (end of a log); for an exec, ``exit`` is the command's exit
  code; ``error``: the stream failed, ``code`` is an
  HTTP status and ``reason`` says why (the cloud side answers the API server with them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack

from schemas.errors import WireFormatError
from schemas.names import is_node_name

VERSION = 1
MAX_FRAME = 256 * 1024
"""The largest frame accepted: a data chunk (at most CHUNK) plus its header, with room to spare."""
CHUNK = 192 * 1024
"""The largest data a frame carries: big enough that the per-message cost of two brokers and the bridge is
small against the bytes (64 KiB held port-forward to 30-40 MB/s through amqtt), under MAX_FRAME with its header,
and a tenth of the credit window."""
STDIN, STDOUT, STDERR, RESIZE = 0, 1, 2, 4
CHANNELS = frozenset({STDIN, STDOUT, STDERR, RESIZE})
_SID = re.compile(r"[0-9a-f]{8,64}")


class FrameError(WireFormatError):
    """A stream frame that does not decode or has a field of the wrong shape; the message names it."""


class Kind(StrEnum):
    OPEN = "open"
    DATA = "data"
    CREDIT = "credit"
    CLOSE = "close"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Frame:
    node: str
    sid: str
    kind: Kind
    seq: int = 0
    data: bytes = b""
    credit: int = 0
    req: dict[str, Any] = field(default_factory=dict)
    code: int = 0
    reason: str = ""
    channel: int = STDOUT
    exit_code: int | None = None

    def encode(self) -> bytes:
        out: dict[str, Any] = {"v": VERSION, "node": self.node, "sid": self.sid, "k": self.kind.value}
        if self.kind == Kind.DATA:
            out["seq"], out["data"] = self.seq, self.data
            if self.channel != STDOUT:
                out["ch"] = self.channel
        if self.credit:
            out["credit"] = self.credit
        if self.req:
            out["req"] = self.req
        if self.kind in (Kind.ERROR, Kind.CLOSE):
            out["code"], out["reason"] = self.code, self.reason
        if self.kind == Kind.CLOSE and self.exit_code is not None:
            out["exit"] = self.exit_code
        return msgpack.packb(out, use_bin_type=True)  # type: ignore[no-any-return]


def decode(payload: bytes) -> Frame:
    """Parse and check a frame once, where it enters; FrameError says which field is wrong."""
    if len(payload) > MAX_FRAME:
        raise FrameError(f"frame of {len(payload)} bytes is over the limit of {MAX_FRAME}")
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise FrameError(f"not a msgpack frame: {exc}") from exc
    if not isinstance(raw, dict):
        raise FrameError("a frame must be a map")
    if raw.get("v") != VERSION:
        raise FrameError(f"frame version {raw.get('v')!r} is not {VERSION}")
    node, sid = raw.get("node"), raw.get("sid")
    if not isinstance(node, str) or not is_node_name(node):
        raise FrameError("node: must be a node name")
    if not isinstance(sid, str) or not _SID.fullmatch(sid):
        raise FrameError("sid: must be 8 to 64 lower-case hex digits")
    try:
        kind = Kind(str(raw.get("k")))
    except ValueError:
        raise FrameError(f"k: {raw.get('k')!r} is not one of {', '.join(Kind)}") from None
    seq, data, credit = raw.get("seq", 0), raw.get("data", b""), raw.get("credit", 0)
    req, code, reason = raw.get("req", {}), raw.get("code", 0), raw.get("reason", "")
    channel, exit_code = raw.get("ch", STDOUT), raw.get("exit")
    if channel not in CHANNELS or isinstance(channel, bool):
        raise FrameError(f"ch: {channel!r} is not one of {sorted(CHANNELS)}")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)
                                  or not 0 <= exit_code <= 255):
        raise FrameError("exit: must be an exit code, 0 to 255")
    for name, value, kinds in (("seq", seq, int), ("credit", credit, int), ("code", code, int)):
        if not isinstance(value, kinds) or isinstance(value, bool) or value < 0:
            raise FrameError(f"{name}: must be a non-negative integer")
    if not isinstance(data, bytes) or len(data) > CHUNK:
        raise FrameError(f"data: must be bytes, at most {CHUNK}")
    if not isinstance(req, dict):
        raise FrameError("req: must be a map")
    if not isinstance(reason, str):
        raise FrameError("reason: must be a string")
    return Frame(node, sid, kind, seq, data, credit, req, code, reason[:1000], channel, exit_code)
