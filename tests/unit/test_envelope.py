"""The envelope codec: valid envelopes round-trip, anything else raises only EnvelopeError."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.bus import RequestError
from schemas.componentstatus import ComponentStatus
from schemas.envelope import Envelope, EnvelopeError, ErrorBody, Group, Op, decode, salvage
from schemas.resource import ResourceKey

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
subdomain = st.builds(".".join, st.lists(label, min_size=1, max_size=3))
module = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
msg_id = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
keys = st.builds(ResourceKey, st.none() | label, st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True), subdomain)
body = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
envelopes = st.builds(
    Envelope,
    node=subdomain, src=module, group=st.sampled_from(Group), op=st.sampled_from(Op),
    res=st.none() | keys, body=body, rv=st.none() | st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    parent=st.none() | msg_id, id=msg_id, ts=st.integers(0, 2**63 - 1),
)


@given(envelopes)
@settings(max_examples=300)
def test_every_valid_envelope_round_trips(envelope: Envelope) -> None:
    assert decode(envelope.encode()) == envelope


@given(st.binary(max_size=512))
@settings(max_examples=500)
def test_random_bytes_raise_only_envelope_error(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["v", "id", "ts", "node", "src", "group", "op", "res", "rv", "parent", "body"]), inner, max_size=12),
    max_leaves=30,
)


@given(msgpack_values)
@settings(max_examples=500)
def test_random_msgpack_values_raise_only_envelope_error(value: Any) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(msgpack.packb(value, use_bin_type=True))


def valid_map(**changes: Any) -> dict[str, Any]:
    raw = Envelope(node="edge-1", src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                   res=ResourceKey("default", "pod", "web"), rv="12", body={"a": 1}).to_map()
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not ...}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"v": 2}, "v"),
        ({"id": ""}, "id"),
        ({"id": "a/b"}, "id"),
        ({"ts": -1}, "ts"),
        ({"ts": "now"}, "ts"),
        ({"node": "Edge_1"}, "node"),
        ({"node": "edge/+"}, "node"),
        ({"src": 3}, "src"),
        ({"group": "nope"}, "group"),
        ({"op": "explode"}, "op"),
        ({"res": "default/pod"}, "res"),
        ({"res": "default/Pod/web"}, "res"),
        ({"rv": 12}, "rv"),
        ({"extra": 1}, "extra"),
        ({"node": ...}, "node"),
        ({"parent": "x" * 65}, "parent"),
    ],
)
def test_validation_names_the_bad_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(msgpack.packb(valid_map(**changes)))
    assert caught.value.field == field
    assert field in str(caught.value)


def test_size_limit_is_enforced_both_ways() -> None:
    big = Envelope(node="n", src="s", group=Group.USER, op=Op.UPLOAD, body=b"x" * 2000)
    with pytest.raises(EnvelopeError, match="over the 1000-byte limit"):
        big.encode(max_size=1000)
    data = big.encode()
    with pytest.raises(EnvelopeError, match="over the 1000-byte limit"):
        decode(data, max_size=1000)
    assert decode(data, max_size=4000) == big


def test_deep_nesting_is_refused_not_crashing() -> None:
    deep = b"\x91" * 100_000 + b"\xc0"  # 100,000 nested one-element arrays
    with pytest.raises(EnvelopeError, match="not a msgpack value"):
        decode(deep)


def test_reply_and_error_point_at_the_request() -> None:
    request = Envelope(node="edge-1", src="edged", group=Group.META, op=Op.QUERY,
                       res=ResourceKey("default", "configmap", "cfg"))
    reply = request.reply("metamanager", {"data": {}})
    assert (reply.parent, reply.op, reply.res, reply.node) == (request.id, Op.RESPONSE, request.res, "edge-1")
    error = request.error("metamanager", 404, "no such configmap")
    assert error.op == Op.ERROR
    assert error.body == {"code": 404, "reason": "no such configmap"}


def test_salvage_reads_id_and_sender_of_an_invalid_envelope() -> None:
    bad = msgpack.packb(valid_map(op="explode"))
    found = salvage(bad)
    assert found is not None
    assert (found.src, found.node) == ("cloudhub", "edge-1")
    assert salvage(b"\xff\x00") is None
    assert salvage(msgpack.packb({"id": "x", "src": "Bad Name"})) is None


def test_an_error_body_is_written_and_read_in_one_place() -> None:
    request = Envelope(node="n1", src="edged", group=Group.META, op=Op.QUERY)
    answer = request.error("metamanager", 404, "no such object")
    assert answer.body == {"code": 404, "reason": "no such object"}
    assert ErrorBody.read(answer.body) == ErrorBody(404, "no such object")
    failure = RequestError(answer)
    assert (failure.code, failure.reason) == (404, "no such object")


@pytest.mark.parametrize("body", [None, [], "boom", {"code": "404"}, {"code": True, "reason": 7}])
def test_an_error_body_of_another_shape_reads_as_500(body: Any) -> None:
    assert ErrorBody.read(body) == ErrorBody(500, "no reason given")


def test_the_component_status_body_keeps_its_keys() -> None:
    assert ComponentStatus("up", 42, started=1700000000).as_body() == {"state": "up", "pid": 42, "started": 1700000000}
    will = ComponentStatus("down", 42, reason="connection lost").as_body()
    assert will == {"state": "down", "pid": 42, "reason": "connection lost"}
    assert ComponentStatus.parse(will) == ComponentStatus("down", 42)
