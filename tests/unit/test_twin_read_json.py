"""DeviceTwin reads device JSON with orjson where that reads what json reads, and with json elsewhere: a request
means the same, and is refused the same, either way (schemas/twin.py's ``_read_json``)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import twin


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (1 is not 1.0 here, and NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def outcome(read: Any, payload: bytes) -> tuple[str, Any]:
    try:
        return "read", read(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return "refused", type(exc).__name__


CORPUS = [
    b'{"event_id":"u1","timestamp":1764900000000,"twin":{"t":{"actual":{"value":"1.5"}}}}',
    b'{"a":123456789012345678901234567890}', b'{"a":18446744073709551615}', b'{"a":18446744073709551616}',
    b'{"a":-9223372036854775808}', b'{"a":-9223372036854775809}', b'{"a":"12345678901234567890123"}',
    b'{"a":1e400}', b'{"a":-1e400}', b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}', b'{"a":-0}',
    b'{"a":-0.0}', b'{"a":1.5E3}', b'{"a":0.1}', b'{"a":1.0000000000000000000001}', b'{"a":1,"a":2}',
    b'\xef\xbb\xbf{"a":1}', b'{"a":"\\ud800"}', b'{"a":"\xff"}', b'{"a":"\\u0000"}', b'{"\\u00e9":1}',
    b'"x"', b'null', b'[1,2]', b'{"a":1}x', b'', b' ', b'\t\n{"a" : [ ] }\r', b'{"a":01}', b'{"a":1.}',
    b'{"a":.5}', b'{"a":"\t"}', b'[' * 2000, '{"a":"é"}'.encode("utf-16"), b'{"a":true,"b":false,"c":null}',
]


@pytest.mark.parametrize("payload", CORPUS)
def test_read_as_json_reads_it(payload: bytes) -> None:
    ours, theirs = outcome(twin._read_json, payload), outcome(json.loads, payload)
    assert ours[0] == theirs[0]
    if ours[0] == "read":
        assert same(ours[1], theirs[1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@given(json_values)
def test_any_document_is_read_as_json_reads_it(value: Any) -> None:
    payload = json.dumps(value).encode()
    assert same(twin._read_json(payload), json.loads(payload))
