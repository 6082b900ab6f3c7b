"""Reading the fields of plain maps that came from elsewhere, and the one error for a body of the wrong shape.

A body from the other side of a link is read with ``STRICT``: the first field of the wrong shape
raises BodyError with its dotted path, so a receiver refuses the body where it enters, with the
field named, before any of its logic runs. An object from a source that already checked it (the
API server, which validates against the schema; a store that took it only after such a check) is
read with ``LENIENT``: a field of another shape reads as absent, and reading never raises. Both go
through the same code, so a type's strict parser and its lenient view cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self, TypeVar

from schemas.errors import WireFormatError

T = TypeVar("T")

_SHAPES = {dict: "a map", list: "a list", str: "a string", bytes: "bytes", int: "an integer", float: "a number",
           bool: "a boolean", type(None): "null"}


class BodyError(WireFormatError):
    """A message body with a field of the wrong shape; ``field`` is its path in the envelope
    (``body.status.conditions[2]``; ``body`` for the body as a whole).

    The message is the field, then why: ``body.status.conditions[2]: must be a map, not a string``."""

    def __init__(self, field: str, reason: str) -> None:
        # Both end up in log lines and error replies, and a field path can hold a key the sender chose.
        self.field = _clip(field, 120)
        self.reason = _clip(reason, 300)
        super().__init__(f"{self.field}: {self.reason}")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shape(value: Any) -> str:
    """What ``value`` is, for an error message (never its repr: it may be nested a thousand levels deep)."""
    return _SHAPES.get(type(value), type(value).__name__)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else shape(key)


@dataclass(frozen=True, slots=True)
class Reader:
    strict: bool

    def refuse(self, where: str, reason: str, default: T) -> T:
        """Strict: raise BodyError for ``where``; lenient: read the field as ``default``."""
        if self.strict:
            raise BodyError(where, reason)
        return default

    def body(self, value: Any, where: str = "body") -> dict[str, Any]:
        """A map that must be there (a message body, a required section)."""
        if isinstance(value, dict):
            return value
        return self.refuse(where, f"must be a map, not {shape(value)}", {})

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        """An optional map: absent (None) reads as an empty one."""
        return {} if value is None else self.body(value, where)

    def mappings(self, value: Any, where: str) -> list[dict[str, Any]]:
        """An optional list of maps: absent reads as an empty list; lenient, items of another shape are skipped."""
        if value is None:
            return []
        if not isinstance(value, list):
            return self.refuse(where, f"must be a list of maps, not {shape(value)}", [])
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                self.refuse(f"{where}[{index}]", f"must be a map, not {shape(item)}", None)
        return [item for item in value if isinstance(item, dict)]

    def text(self, value: Any, where: str) -> str | None:
        """An optional string."""
        if value is None or isinstance(value, str):
            return value
        return self.refuse(where, f"must be a string, not {shape(value)}", None)

    def required_text(self, value: Any, where: str) -> str:
        """A string that must be there; lenient, an absent one reads as ""."""
        if isinstance(value, str):
            return value
        return self.refuse(where, "is missing" if value is None else f"must be a string, not {shape(value)}", "")

    def integer(self, value: Any, where: str) -> int | None:
        """An optional integer (a boolean is not one, though Python says so)."""
        if value is None or type(value) is int:
            return value
        return self.refuse(where, f"must be an integer, not {shape(value)}", None)

    def text_map(self, value: Any, where: str) -> dict[str, str]:
        """An optional map of strings to strings (labels, annotations, ConfigMap data)."""
        found = self.mapping(value, where)
        for key, item in found.items():
            if not isinstance(key, str):
                self.refuse(where, f"must have strings as keys, not {shape(key)}", None)
            elif not isinstance(item, str):
                self.refuse(f"{where}.{_key(key)}", f"must be a string, not {shape(item)}", None)
        return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


STRICT = Reader(strict=True)
"""For bodies from the other side of a link: refuses the first field of the wrong shape."""
LENIENT = Reader(strict=False)
"""For objects already checked (the API server's, a store's): reads a field of the wrong shape as absent."""


class ReadByReader:
    """A type read from a plain map by ``read(obj, reader)``: ``parse`` reads strictly, ``view`` leniently.

    A slotted dataclass may derive from it (it adds no slots), so each type writes only its ``read``."""

    __slots__ = ()

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> Self:
        raise NotImplementedError

    @classmethod
    def parse(cls, obj: Any) -> Self:
        """From the other side of a link: BodyError names the first field of the wrong shape."""
        return cls.read(obj, STRICT)

    @classmethod
    def view(cls, obj: Any) -> Self:
        """From a source that checked it already: never raises."""
        return cls.read(obj, LENIENT)
