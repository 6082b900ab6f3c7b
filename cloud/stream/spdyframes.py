"""SPDY/3.1 frames: their types, their bytes, and the compressed header blocks they carry.

This is the wire layer only (no streams, no windows): ``FrameEncoder`` turns a frame into bytes and
``FrameDecoder`` turns bytes, fed in any slicing, into frames. Each holds the zlib context of one direction of
one connection, because SPDY compresses every header block of a direction as one continuing zlib stream
(flushed with a sync flush after each block) primed with the SPDY/3 dictionary.

Anything malformed raises ``SpdyProtocolError``; the session above turns that into a GOAWAY and a closed
connection, never an exception escaping to the server.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from cloud.errors import CloudError
from cloud.stream.spdydictionary import SPDY3_DICTIONARY

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_LENGTH = (1 << 24) - 1
MAX_STREAM_ID = (1 << 31) - 1
MAX_WINDOW = (1 << 31) - 1
DEFAULT_MAX_HEADER_BLOCK = 256 * 1024

Headers = dict[str, list[str]]


class FrameType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class Setting(IntEnum):
    MAX_CONCURRENT_STREAMS = 4
    INITIAL_WINDOW_SIZE = 7


class SpdyProtocolError(CloudError, ValueError):
    """The peer broke the framing rules; the connection cannot continue."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    flags: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    values: dict[int, int] = field(default_factory=dict)
    flags: int = 0


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    flags: int = 0


Frame = SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway | WindowUpdate | Data


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed block: a count, then length-prefixed lowercase names and NUL-joined values."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        raw_name = name.lower().encode("utf-8")
        raw_value = "\0".join(values).encode("utf-8")
        out.append(struct.pack(">I", len(raw_name)) + raw_name + struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """The headers of an uncompressed block; a truncated, padded, empty-named or repeated name is an error."""
    view = memoryview(block)
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(view):
            raise SpdyProtocolError("header block is truncated")
        chunk = bytes(view[offset:offset + size])
        offset += size
        return chunk

    (count,) = struct.unpack(">I", take(4))
    headers: Headers = {}
    for _ in range(count):
        (name_length,) = struct.unpack(">I", take(4))
        name = take(name_length).decode("utf-8", errors="strict") if name_length else ""
        if not name:
            raise SpdyProtocolError("header block has an empty header name")
        if name != name.lower():
            raise SpdyProtocolError(f"header name {name!r} is not lowercase")
        if name in headers:
            raise SpdyProtocolError(f"header name {name!r} appears twice")
        (value_length,) = struct.unpack(">I", take(4))
        headers[name] = take(value_length).decode("utf-8", errors="strict").split("\0")
    if offset != len(view):
        raise SpdyProtocolError("header block has bytes after its last header")
    return headers


class FrameEncoder:
    """Frames to bytes for one direction of one connection (it owns that direction's compressor)."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                            zlib.Z_DEFAULT_STRATEGY, SPDY3_DICTIONARY)

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._compressor.compress(block) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id, data, flags):
                if len(data) > MAX_LENGTH:
                    raise ValueError("a DATA frame holds at most 16 MiB - 1; split the data")
                return struct.pack(">II", stream_id & MAX_STREAM_ID, (flags << 24) | len(data)) + data
            case SynStream(stream_id, headers, associated_id, priority, flags):
                body = struct.pack(">IIBB", stream_id, associated_id, (priority & 7) << 5, 0) + self._compress(headers)
                return _control(FrameType.SYN_STREAM, flags, body)
            case SynReply(stream_id, headers, flags):
                return _control(FrameType.SYN_REPLY, flags, struct.pack(">I", stream_id) + self._compress(headers))
            case HeadersFrame(stream_id, headers, flags):
                return _control(FrameType.HEADERS, flags, struct.pack(">I", stream_id) + self._compress(headers))
            case RstStream(stream_id, status):
                return _control(FrameType.RST_STREAM, 0, struct.pack(">II", stream_id, status))
            case Settings(values, flags):
                entries = b"".join(struct.pack(">II", key & 0xFFFFFF, value) for key, value in values.items())
                return _control(FrameType.SETTINGS, flags, struct.pack(">I", len(values)) + entries)
            case Ping(ping_id):
                return _control(FrameType.PING, 0, struct.pack(">I", ping_id))
            case GoAway(last_good, status):
                return _control(FrameType.GOAWAY, 0, struct.pack(">II", last_good, status))
            case WindowUpdate(stream_id, delta):
                return _control(FrameType.WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


def _control(frame_type: FrameType, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_LENGTH:
        raise ValueError("a control frame holds at most 16 MiB - 1")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(body)) + body


class FrameDecoder:
    """Bytes to frames for one direction of one connection (it owns that direction's decompressor).

    ``max_frame`` bounds what one frame may make us buffer and ``max_header_block`` what a compressed header
    block may inflate to, so a hostile peer cannot make the server hold more than that.
    """

    def __init__(self, *, max_frame: int = MAX_LENGTH, max_header_block: int = DEFAULT_MAX_HEADER_BLOCK) -> None:
        self._buffer = bytearray()
        self._decompressor = zlib.decompressobj(15, SPDY3_DICTIONARY)
        self._max_frame = max_frame
        self._max_header_block = max_header_block

    def feed(self, data: bytes) -> list[Frame]:
        """Every complete frame in what has arrived so far; a partial frame waits for more bytes."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer)
            length = second & MAX_LENGTH
            if length > self._max_frame:
                raise SpdyProtocolError(f"frame of {length} bytes is larger than the {self._max_frame} allowed")
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            flags = second >> 24
            if first & 0x80000000:
                frame = self._control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, body)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Data(first & MAX_STREAM_ID, body, flags))
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._decompressor.decompress(block, self._max_header_block + 1)
        except zlib.error as error:
            raise SpdyProtocolError(f"header block does not decompress: {error}") from error
        if len(raw) > self._max_header_block or self._decompressor.unconsumed_tail:
            raise SpdyProtocolError(f"header block inflates past {self._max_header_block} bytes")
        return decode_header_block(raw)

    def _control(self, version: int, kind: int, flags: int, body: bytes) -> Frame | None:
        if version != VERSION:
            raise SpdyProtocolError(f"control frame of SPDY version {version}; this server speaks version 3")
        try:
            frame_type = FrameType(kind)
        except ValueError:
            return None  # the draft: a receiver ignores control frames of a type it does not know
        if frame_type is FrameType.SYN_STREAM:
            _need(body, 10, "SYN_STREAM")
            stream_id, associated, priority, _slot = struct.unpack_from(">IIBB", body)
            return SynStream(_stream_id(stream_id, "SYN_STREAM"), self._headers(body[10:]),
                             associated & MAX_STREAM_ID, priority >> 5, flags)
        if frame_type in (FrameType.SYN_REPLY, FrameType.HEADERS):
            _need(body, 4, frame_type.name)
            stream_id = _stream_id(struct.unpack_from(">I", body)[0], frame_type.name)
            headers = self._headers(body[4:])
            if frame_type is FrameType.SYN_REPLY:
                return SynReply(stream_id, headers, flags)
            return HeadersFrame(stream_id, headers, flags)
        if frame_type is FrameType.SETTINGS:
            _need(body, 4, "SETTINGS")
            (count,) = struct.unpack_from(">I", body)
            if len(body) != 4 + 8 * count:
                raise SpdyProtocolError(f"SETTINGS of {count} entries has {len(body)} bytes")
            values = {}
            for index in range(count):
                key, value = struct.unpack_from(">II", body, 4 + 8 * index)
                values[key & 0xFFFFFF] = value
            return Settings(values, flags)
        if frame_type is FrameType.PING:
            _exact(body, 4, "PING")
            return Ping(struct.unpack(">I", body)[0])
        _exact(body, 8, frame_type.name)
        word, value = struct.unpack(">II", body)
        if frame_type is FrameType.RST_STREAM:
            if value == 0:
                raise SpdyProtocolError("RST_STREAM with status 0")
            return RstStream(_stream_id(word, "RST_STREAM"), value)
        if frame_type is FrameType.GOAWAY:
            return GoAway(word & MAX_STREAM_ID, value)
        delta = value & MAX_WINDOW
        if delta == 0:
            raise SpdyProtocolError("WINDOW_UPDATE with a delta of 0")
        return WindowUpdate(word & MAX_STREAM_ID, delta)


def _need(body: bytes, size: int, name: str) -> None:
    if len(body) < size:
        raise SpdyProtocolError(f"{name} frame of {len(body)} bytes is shorter than {size}")


def _exact(body: bytes, size: int, name: str) -> None:
    if len(body) != size:
        raise SpdyProtocolError(f"{name} frame has {len(body)} bytes, not {size}")


def _stream_id(word: int, name: str) -> int:
    stream_id = word & MAX_STREAM_ID
    if stream_id == 0:
        raise SpdyProtocolError(f"{name} for stream 0")
    return stream_id
