"""schemas/twin.py ``dumps`` writes with orjson and falls back to json for what orjson refuses; both ways give
the same bytes, Go's (compact, raw UTF-8, ``<>&`` and U+2028/U+2029 escaped, a lone surrogate as U+FFFD)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import twin


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
])
def test_both_ways_give_the_same_bytes(obj: dict[str, Any]) -> None:
    assert twin.dumps(obj) == by_json(obj)


def test_what_neither_way_takes_still_raises_as_before() -> None:
    with pytest.raises(TypeError):
        twin.dumps({"x": object()})
