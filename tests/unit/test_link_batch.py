"""Batches on the link (schemas/batch.py): packed within their limits, read back member for member, and refused
whole when anything in them is wrong, so that nothing of a bad batch is ever applied."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from schemas.batch import MAX_MEMBERS, Batch, Packed, pack
from schemas.envelope import Envelope, EnvelopeError, Group, Op, decode
from schemas.resource import ResourceKey

NODE = "edge-1"


def obj(name: str, *, size: int = 10, group: Group = Group.RESOURCE, node: str = NODE) -> Envelope:
    return Envelope(node=node, src="edgecontroller", group=group, op=Op.UPDATE,
                    res=ResourceKey("default", "configmap", name), rv="7", body={"data": {"k": "x" * size}})


def packed(members: list[Envelope], **limits: int) -> list[Packed]:
    return pack(NODE, "cloudhub", members, max_members=limits.get("max_members", 100),
                max_bytes=limits.get("max_bytes", 64 * 1024))


def received(item: Packed, max_size: int = 1024 * 1024) -> Batch:
    """What a receiver reads: the published bytes through the ordinary decode, then the batch frame."""
    return Batch.parse(decode(item.payload, max_size))


def frame(members: Any, groups: Any) -> Envelope:
    return Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=Op.BATCH,
                    body={"members": members, "groups": groups})


def test_members_round_trip_in_order_as_one_message() -> None:
    members = [obj(f"c{i}") for i in range(5)] + [obj("t", group=Group.TWIN)]
    (item,) = packed(members)
    assert item.members == tuple(members)
    assert item.envelope.op == Op.BATCH
    assert item.envelope.group == Group.HUB
    batch = received(item)
    assert batch.groups == (Group.RESOURCE,) * 5 + (Group.TWIN,)
    assert batch.members(1024 * 1024) == members
    assert [decode(p) for p in batch.payloads] == members  # the member bytes are the single envelope's bytes


def test_a_member_alone_goes_as_itself_as_before_batches() -> None:
    alone = obj("c")
    (item,) = packed([alone])
    assert item.envelope == alone
    assert decode(item.payload) == alone
    assert packed([]) == []


@pytest.mark.parametrize(("count", "max_members", "sizes"), [(10, 4, [4, 4, 2]), (9, 3, [3, 3, 3]), (5, 1, [1] * 5)])
def test_the_member_count_limit(count: int, max_members: int, sizes: list[int]) -> None:
    members = [obj(f"c{i}") for i in range(count)]
    items = packed(members, max_members=max_members)
    assert [len(item.members) for item in items] == sizes
    assert [m for item in items for m in item.members] == members  # order kept across batches


def test_the_byte_limit_is_never_exceeded_and_order_is_kept() -> None:
    members = [obj(f"c{i}", size=300 + 37 * i) for i in range(40)]
    items = packed(members, max_bytes=2048)
    assert len(items) > 5
    assert all(len(item.payload) <= 2048 for item in items)
    assert [m for item in items for m in item.members] == members
    for item in items:
        if len(item.members) > 1:
            assert received(item, 2048).members(2048) == list(item.members)


def test_a_member_too_large_to_share_goes_alone_between_batches() -> None:
    a, b, big, c = obj("a"), obj("b"), obj("big", size=5000), obj("c")
    items = packed([a, b, big, c], max_bytes=4096)
    assert [item.members for item in items] == [(a, b), (big,), (c,)]
    assert items[1].envelope == big  # itself: the receiver's own size limit decides, as for any single envelope


def test_a_member_that_cannot_be_encoded_goes_alone_for_the_sender_to_refuse() -> None:
    a, bad, b = obj("a"), obj("bad").with_body({"x": object()}), obj("b")
    items = packed([a, bad, b])
    assert [item.members for item in items] == [(a,), (bad,), (b,)]
    assert items[1].payload == b""
    with pytest.raises(EnvelopeError):
        bad.encode()


def test_limits_that_leave_no_room_are_refused() -> None:
    with pytest.raises(ValueError, match="max_members"):
        packed([obj("a")], max_members=0)
    with pytest.raises(ValueError, match="max_bytes"):
        packed([obj("a")], max_bytes=100)


def test_an_oversized_batch_is_refused_by_the_receivers_size_limit() -> None:
    (item,) = packed([obj(f"c{i}", size=200) for i in range(20)])
    with pytest.raises(EnvelopeError, match="over the 2048-byte limit"):
        decode(item.payload, 2048)


@pytest.mark.parametrize(("members", "groups", "field"), [
    ([], [], "body.members"),
    ("x", ["resource"], "body.members"),
    ([b"x"] * (MAX_MEMBERS + 1), ["resource"] * (MAX_MEMBERS + 1), "body.members"),
    ([b"x", b"y"], ["resource"], "body.groups"),
    ([b"x"], None, "body.groups"),
    (["not bytes"], ["resource"], "body.members[0]"),
    ([b"x"], ["sideways"], "body.groups[0]"),
    ([b"x"], [7], "body.groups[0]"),
])
def test_a_bad_frame_is_refused_naming_the_field(members: Any, groups: Any, field: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        Batch.parse(frame(members, groups))
    assert caught.value.field == field


def test_only_a_hub_batch_is_a_batch() -> None:
    with pytest.raises(EnvelopeError) as caught:
        Batch.parse(obj("c"))
    assert caught.value.field == "op"
    with pytest.raises(EnvelopeError) as caught:
        Batch.parse(Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=Op.BATCH, body=[1]))
    assert caught.value.field == "body"


def _members_error(members: list[bytes], groups: list[str], max_size: int = 1024 * 1024) -> EnvelopeError:
    batch = Batch.parse(frame(members, groups))
    with pytest.raises(EnvelopeError) as caught:
        batch.members(max_size)
    return caught.value


def test_one_bad_member_refuses_the_whole_batch_naming_it() -> None:
    good = obj("a").encode()
    garbage = b"\xc1not msgpack"
    missing_op = msgpack.packb({k: v for k, v in obj("b").to_map().items() if k != "op"})
    assert _members_error([good, garbage], ["resource"] * 2).field == "body.members[1].payload"
    assert _members_error([good, missing_op], ["resource"] * 2).field == "body.members[1].op"
    assert _members_error([good, obj("b", size=3000).encode()], ["resource"] * 2, 2048).field == \
        "body.members[1].payload"


def test_a_member_must_agree_with_its_batch() -> None:
    other_node = obj("a", node="edge-2").encode()
    assert _members_error([other_node], ["resource"]).field == "body.members[0].node"
    assert _members_error([obj("a").encode()], ["twin"]).field == "body.members[0].group"
    (inner,) = packed([obj("a"), obj("b")])
    assert _members_error([inner.payload], ["hub"]).field == "body.members[0].op"
    twice = obj("a").encode()
    assert _members_error([twice, twice], ["resource"] * 2).field == "body.members[1].id"


def test_select_passes_some_members_on_undecoded() -> None:
    members = [obj("a"), obj("t", group=Group.TWIN), obj("b")]
    (item,) = packed(members)
    batch = received(item)
    part = Batch.parse(batch.select([0, 2]))
    assert part.payloads == (batch.payloads[0], batch.payloads[2])
    assert part.members(1024 * 1024) == [members[0], members[2]]
    assert part.envelope.node == NODE
    assert part.envelope.src == "cloudhub"


def test_the_benchmarks_watchers_see_a_batchs_members_one_by_one() -> None:
    from edgehive.bench.harness import envelopes_in  # noqa: PLC0415 (the bench's helper, beside the codec's tests)

    members = [obj("a"), obj("b")]
    (item,) = packed(members)
    assert envelopes_in(item.payload) == members
    assert envelopes_in(members[0].encode()) == [members[0]]
    assert envelopes_in(b"\xc1") == []
