"""schemas/twin.py ``dumps`` writes with orjson and falls back to json for what orjson refuses; both ways give
the same bytes, Go's (compact, raw UTF-8, ``<>&`` and U+2028/U+2029 escaped, a lone surrogate as U+FFFD)."""

from __future__ import annotations

import datetime
import enum
import json
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from schemas import twin


class State(enum.StrEnum):
    ONLINE = "online"


class Count(enum.IntEnum):
    ONE = 1


@dataclass
class Point:
    x: int
    y: int


def by_json(obj: dict[str, Any]) -> bytes:
    """The json-only way, as dumps wrote every answer before orjson."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = twin._GO_ESCAPED.sub(lambda m: twin._GO_ESCAPES[m.group()], text)
    return twin._LONE_SURROGATE.sub("\ufffd", text).encode()


@pytest.mark.parametrize("obj", [
    {"event_id": "e1", "timestamp": 1764900000000, "twin": {"p0": {"actual": {"value": "12.5"}}}},
    {"event_id": "<script>&amp;</script>", "n": [1, 2, {"x": None, "y": True}]},
    {"name": "Flur \u2013 Süd", "sep": "a\u2028b\u2029c", "tab": "\t\n\x01"},
    {"event_id": "a\ud800b"},  # a lone surrogate: orjson refuses it
    {"big": 2**70},  # over 64 bits: orjson refuses it
    {"k": "\x7f\u00e9\U0001f600"},
    {},
    {"small": 1e-05, "large": 1e16, "plain": [1.5, 2], "nan": float("nan"), "inf": float("-inf")},  # floats
    {"deleted": None, "value": "12.5"},
    {"state": State.ONLINE, "count": Count.ONE},  # subclasses of str and int
])
def test_both_ways_give_the_same_bytes(obj: dict[str, Any]) -> None:
    assert twin.dumps(obj) == by_json(obj)


@pytest.mark.parametrize("value", [object(), datetime.datetime(2026, 12, 5), Point(1, 2)])
def test_what_json_refuses_is_still_refused(value: object) -> None:
    """orjson would write a datetime or a dataclass; json refuses both, and so does dumps, as before."""
    with pytest.raises(TypeError):
        by_json({"x": value})
    with pytest.raises(TypeError):
        twin.dumps({"x": value})


def test_an_updates_answer_takes_the_fast_way() -> None:
    """The answers DeviceTwin writes for an update (strings, ints, booleans) match nothing that sends them the
    json way."""
    entry = twin.entry(None, 0, "12.5", 1764900000000, "float", True)
    answer = twin.result("u1", {"p0": entry, "p1": entry})
    assert not twin._orjson_may_differ(orjson.dumps(answer))
