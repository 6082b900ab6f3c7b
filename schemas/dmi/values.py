"""configData values on DMI's wire: each a protobuf wrapper packed in an Any (``CustomizedValue.data``).

Both ends use this: the edge's DMI process packs a Device's free-form configData for a mapper, and a mapper
unpacks it. KubeEdge packs a string as StringValue, a boolean as BoolValue and every number as FloatValue (Go
reads every JSON number as float64), so a mapper built with KubeEdge's framework expects exactly that.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from schemas.errors import WireFormatError


class NotAWrapper(WireFormatError):
    """A value that is not (or cannot be packed as) one of protobuf's wrappers; the message says which."""


def pack(value: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    wrapper: Message
    if isinstance(value, bool):  # before int: a bool is an int in Python
        wrapper = wrappers_pb2.BoolValue(value=value)
    elif isinstance(value, str):
        wrapper = wrappers_pb2.StringValue(value=value)
    elif isinstance(value, int | float):
        wrapper = wrappers_pb2.FloatValue(value=float(value))
    else:
        raise NotAWrapper(f"a configData value of type {type(value).__name__} cannot be packed for a mapper")
    packed.Pack(wrapper)
    return packed


def unpack(value: any_pb2.Any) -> str | float | bool | int:
    """A configData value as the plain value it was packed from (what a mapper needs)."""
    for wrapper_type in (wrappers_pb2.StringValue, wrappers_pb2.FloatValue, wrappers_pb2.BoolValue,
                         wrappers_pb2.DoubleValue, wrappers_pb2.Int32Value, wrappers_pb2.Int64Value):
        if value.Is(wrapper_type.DESCRIPTOR):
            wrapper = wrapper_type()
            value.Unpack(wrapper)
            return wrapper.value
    raise NotAWrapper(f"a configData value of type {value.type_url} is not a protobuf wrapper")
