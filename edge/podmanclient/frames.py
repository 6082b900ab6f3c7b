"""podman's multiplexed output of a container without a terminal (logs, exec): frames of
[stream (0 stdin, 1 stdout, 2 stderr), 0, 0, 0, size (big-endian u32)] followed by ``size`` bytes."""

from __future__ import annotations

import struct

HEADER = struct.Struct(">BxxxI")


def demux(data: bytes) -> tuple[bytes, bytes]:
    """stdout and stderr of a whole multiplexed answer. A truncated last frame keeps what came of it."""
    out, err = bytearray(), bytearray()
    at = 0
    while len(data) - at >= HEADER.size:
        kind, size = HEADER.unpack_from(data, at)
        piece = data[at + HEADER.size:at + HEADER.size + size]
        (err if kind == 2 else out).extend(piece)
        at += HEADER.size + size
    return bytes(out), bytes(err)


def joined(data: bytes) -> bytes:
    """Both streams of a multiplexed answer in the order they came, without the framing (a log as a kubelet
    shows it)."""
    out = bytearray()
    at = 0
    while len(data) - at >= HEADER.size:
        _kind, size = HEADER.unpack_from(data, at)
        out += data[at + HEADER.size:at + HEADER.size + size]
        at += HEADER.size + size
    return bytes(out)
