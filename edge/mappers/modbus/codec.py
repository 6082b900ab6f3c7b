"""Register contents to twin values and back, the way KubeEdge's Modbus mapper reads them.

Words are read big-endian (Modbus's own order); ``isRegisterSwap`` reverses the order of the registers and
``isSwap`` the two bytes inside each one, before the bytes are read as the data type: an unsigned integer of
2, 4 or 8 bytes, an IEEE 754 float (4) or double (8), a boolean, or UTF-8 text. ``scale`` multiplies numbers
(integers are then truncated toward zero, as KubeEdge's int64 conversion does); floats are written with six
decimals, as KubeEdge formats them. Twin values are strings, as in KubeEdge's twins.

Where we part from KubeEdge, on purpose: a boolean read from words is true when any byte is non-zero
(KubeEdge tests only the first byte for 1, so a holding register holding 1 reads false); text loses the NUL
padding a fixed-width register field carries; swaps on coils and discrete inputs change nothing (a bit has no
byte order), where KubeEdge shuffles the packed bytes.

Writing is the inverse: the desired string is parsed as the data type, divided by ``scale``, encoded and
swapped back, and refused (``ValueError`` naming the value) when the registers cannot hold it.
"""

from __future__ import annotations

import math
import struct

from edge.errors import EdgeError
from edge.mappers.modbus.config import DataType, VisitorConfig

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class EncodeError(EdgeError, ValueError):
    """A desired value the property's registers cannot hold; the message says why."""


def swap(data: bytes, visitor: VisitorConfig) -> bytes:
    """Apply the visitor's register swap and byte swap (each undoes itself, so this both decodes and encodes)."""
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if visitor.is_register_swap:
        words.reverse()
    if visitor.is_swap:
        words = [w[::-1] for w in words]
    return b"".join(words)


def decode_words(visitor: VisitorConfig, registers: list[int]) -> str:
    """The twin value of ``limit`` 16-bit registers read from a holding or input register table."""
    data = swap(b"".join(r.to_bytes(2, "big") for r in registers), visitor)
    kind = visitor.data_type
    if kind is DataType.INT:
        return _scaled_int(int.from_bytes(data, "big"), visitor.scale)
    if kind is DataType.FLOAT:
        return f"{struct.unpack('>f', data)[0] * visitor.scale:.6f}"
    if kind is DataType.DOUBLE:
        return f"{struct.unpack('>d', data)[0] * visitor.scale:.6f}"
    if kind is DataType.BOOLEAN:
        return "true" if any(data) else "false"
    return data.rstrip(b"\x00").decode("utf-8", errors="replace")


def decode_bits(visitor: VisitorConfig, bits: list[bool]) -> str:
    """The twin value of ``limit`` coils or discrete inputs: the first bit, or the bits as an unsigned integer
    with the first coil as its lowest bit (the order Modbus packs them in on the wire)."""
    if visitor.data_type is DataType.BOOLEAN:
        return "true" if bits[0] else "false"
    return _scaled_int(sum(1 << i for i, bit in enumerate(bits) if bit), visitor.scale)


def encode_words(visitor: VisitorConfig, value: str) -> list[int]:
    """The registers to write so that ``decode_words`` reads ``value`` back (before truncation)."""
    width = 2 * visitor.limit
    kind = visitor.data_type
    if kind is DataType.INT:
        data = _unscaled_int(value, visitor, 8 * width).to_bytes(width, "big")
    elif kind in (DataType.FLOAT, DataType.DOUBLE):
        number = _number(value, visitor) / visitor.scale
        try:
            data = struct.pack(">f" if kind is DataType.FLOAT else ">d", number)
        except OverflowError:
            raise EncodeError(f"{value!r} does not fit in a {kind.value}") from None
    elif kind is DataType.BOOLEAN:
        data = int(_boolean(value)).to_bytes(width, "big")
    else:
        text = value.encode()
        if len(text) > width:
            raise EncodeError(f"{value!r} is {len(text)} bytes, {visitor.limit} register(s) hold {width}")
        data = text.ljust(width, b"\x00")
    data = swap(data, visitor)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, width, 2)]


def encode_bits(visitor: VisitorConfig, value: str) -> list[bool]:
    """The coils to write: one for a boolean, ``limit`` (lowest bit first) for an int."""
    if visitor.data_type is DataType.BOOLEAN:
        return [_boolean(value)]
    raw = _unscaled_int(value, visitor, visitor.limit)
    return [bool(raw >> i & 1) for i in range(visitor.limit)]


def _scaled_int(raw: int, scale: float) -> str:
    # An exact integer when nothing scales it: a 64-bit register value would lose digits in a float.
    return str(raw) if scale == 1 else str(int(raw * scale))


def _number(value: str, visitor: VisitorConfig) -> float:
    try:
        number = float(value)
    except ValueError:
        raise EncodeError(f"{value!r} is not a {visitor.data_type.value}") from None
    if not math.isfinite(number):
        raise EncodeError(f"{value!r} is not a finite {visitor.data_type.value}")
    return number


def _unscaled_int(value: str, visitor: VisitorConfig, bits: int) -> int:
    number = _number(value, visitor) / visitor.scale
    raw = round(number)
    if abs(number - raw) > 1e-9 * max(1.0, abs(number)):
        raise EncodeError(f"{value!r} divided by scale {visitor.scale:g} is not a whole number")
    if not 0 <= raw < 1 << bits:
        # Reads are unsigned (as KubeEdge's), so a negative value would read back as another number.
        raise EncodeError(f"{value!r} is outside the {bits}-bit unsigned range 0..{(1 << bits) - 1}")
    return raw


def _boolean(value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise EncodeError(f"{value!r} is not a boolean (true, false, 1 or 0)")
