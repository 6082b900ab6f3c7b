"""Batches: many envelopes in one MQTT message on the link, delivery still per envelope.

A batch is itself an envelope (group ``hub``, op ``batch``) whose body carries its members as
their own encoded bytes, each member's group beside it::

    {"groups": ["resource", "resource", "twin"], "members": [<bin>, <bin>, <bin>]}

Why bytes and not maps: a hub that only routes reads ``groups`` to pick the destination and
passes the members on as they came, never decoding or re-encoding the objects inside; the
module that applies them decodes each with the same ``decode`` as an envelope sent alone, so
a member is validated exactly like one. The whole message is still one envelope, so the
receiver's size limit (``max_envelope_size``) is checked on it before anything is read.

Why a batch is refused whole: ``Batch.members`` decodes and checks every member before any is
applied, and one that fails refuses them all (EnvelopeError naming ``body.members[i]...``).
Nothing is half applied; the sender still holds each member as its own queue entry and sends
them again (in whatever batches it packs next time). Delivery is per member: each keeps its
id, is answered with ``parent`` = that id, and is resent and coalesced on its own.

A batch goes only to a peer that said it takes them: an EdgeHub says so in its keepalives
(``Keepalive.batch_bytes``, the largest batch it accepts); CloudHub says so in its answer to
them (``KeepaliveAnswer.batch_bytes``), after which the node's outbox goes up in batches
(``pack_encoded``: its entries are kept encoded); a node's answers to a batch go up as a
batch, which the cloud that sent one understands. A peer of the previous version never
sees the op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from schemas.envelope import Envelope, EnvelopeError, Group, Op, decode

MAX_MEMBERS = 1000
"""The most members a batch may carry; more is refused on decode (bounds the work one message can cause)."""
MIN_BYTES = 1024
"""The smallest byte budget a packer accepts: below it hardly any object fits with the batch's own fields."""
_MEMBER_OVERHEAD = 5 + 1 + max(len(g.value) for g in Group)
"""Bytes a member adds besides its payload: msgpack's bin header (at most 5) and its group string."""
_LIST_GROWTH = 2 * 4
"""Both lists' headers grow from 1 to at most 5 bytes as members are added."""


@dataclass(frozen=True, slots=True)
class Batch:
    """A received batch whose frame is valid: the carrier envelope, and each member's group and bytes."""

    envelope: Envelope
    groups: tuple[Group, ...]
    payloads: tuple[bytes, ...]

    @classmethod
    def parse(cls, envelope: Envelope) -> Batch:
        """Check the frame without decoding a member; raise EnvelopeError naming the bad field."""
        if envelope.op != Op.BATCH or envelope.group != Group.HUB:
            raise EnvelopeError("op", f"a batch is group hub, op batch; not {envelope.group.value} "
                                      f"{envelope.op.value}")
        body = envelope.body
        if not isinstance(body, dict):
            raise EnvelopeError("body", "a batch's body must be a map of groups and members")
        members, groups = body.get("members"), body.get("groups")
        if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
            raise EnvelopeError("body.members", f"must be a list of 1 to {MAX_MEMBERS} encoded envelopes")
        if not isinstance(groups, list) or len(groups) != len(members):
            raise EnvelopeError("body.groups", f"must be a list of {len(members)} groups, one per member")
        payloads: list[bytes] = []
        for index, payload in enumerate(members):
            if not isinstance(payload, bytes):
                raise EnvelopeError(f"body.members[{index}]", "must be an encoded envelope (bytes)")
            payloads.append(payload)
        parsed: list[Group] = []
        for index, group in enumerate(groups):
            try:
                parsed.append(Group(group if isinstance(group, str) else ""))
            except ValueError:
                raise EnvelopeError(f"body.groups[{index}]", "is not a group") from None
        return cls(envelope, tuple(parsed), tuple(payloads))

    def __len__(self) -> int:
        return len(self.payloads)

    def members(self, max_size: int) -> list[Envelope]:
        """Every member decoded and checked, or EnvelopeError for the first that is not acceptable: a member
        must be a valid envelope about the batch's node, of the group the frame says, not itself a batch, and
        its id must be the only one of its kind in the batch (answers are matched by id)."""
        out: list[Envelope] = []
        seen: set[str] = set()
        for index, payload in enumerate(self.payloads):
            where = f"body.members[{index}]"
            try:
                member = decode(payload, max_size)
            except EnvelopeError as exc:
                raise EnvelopeError(f"{where}.{exc.field}", exc.reason) from None
            if member.node != self.envelope.node:
                raise EnvelopeError(f"{where}.node", f"is {member.node!r}; the batch is {self.envelope.node!r}'s")
            if member.group != self.groups[index]:
                raise EnvelopeError(f"{where}.group", f"is {member.group.value}; the batch says "
                                                      f"{self.groups[index].value}")
            if member.op == Op.BATCH:
                raise EnvelopeError(f"{where}.op", "a batch may not carry a batch")
            if member.id in seen:
                raise EnvelopeError(f"{where}.id", f"{member.id} is in the batch twice")
            seen.add(member.id)
            out.append(member)
        return out

    def select(self, indexes: Sequence[int]) -> Envelope:
        """A new batch of some of the members (as they came, undecoded), from the same sender: for a hub that
        passes parts of a batch to different modules."""
        return batch_envelope(self.envelope, [self.groups[i] for i in indexes], [self.payloads[i] for i in indexes])


def batch_envelope(like: Envelope, groups: Sequence[Group], payloads: Sequence[bytes], *,
                   parent: str | None = None) -> Envelope:
    """The carrier of ``payloads``, from ``like``'s node and sender."""
    return _carrier(like.node, like.src, parent, groups, payloads)


@dataclass(frozen=True, slots=True)
class Packed:
    """One message to publish: a batch of several members, or one member alone; and the members it carries."""

    envelope: Envelope
    payload: bytes
    members: tuple[Envelope, ...]


def pack(node: str, src: str, members: Sequence[Envelope], *, max_members: int, max_bytes: int,
         parent: str | None = None) -> list[Packed]:
    """``members`` in order, in as few messages as the limits allow: at most ``max_members`` members and
    ``max_bytes`` bytes each. A member that would be alone goes as itself, not as a batch of one (the same
    bytes as before batches existed); so does one too large to share a batch, or that cannot be encoded
    (its ``payload`` is empty: the caller's publish raises the encoding error as it always did)."""
    if max_members < 1 or max_bytes < MIN_BYTES:
        raise ValueError(f"a batch needs room for a member: max_members {max_members}, max_bytes {max_bytes}")
    out: list[Packed] = []
    base = len(_encode(_carrier(node, src, parent, [], [])))
    groups: list[Group] = []
    payloads: list[bytes] = []
    carried: list[Envelope] = []
    size = base + _LIST_GROWTH

    def flush() -> None:
        nonlocal size
        if len(carried) == 1:
            out.append(Packed(carried[0], payloads[0], (carried[0],)))
        elif carried:
            envelope = _carrier(node, src, parent, groups, payloads)
            out.append(Packed(envelope, _encode(envelope), tuple(carried)))
        groups.clear()
        payloads.clear()
        carried.clear()
        size = base + _LIST_GROWTH

    for member in members:
        try:
            payload = member.encode(max_bytes)
        except EnvelopeError:
            flush()
            out.append(Packed(member, b"", (member,)))
            continue
        cost = len(payload) + _MEMBER_OVERHEAD
        if carried and (len(carried) >= max_members or size + cost > max_bytes):
            flush()
        if size + cost > max_bytes:  # too large to share a batch at all: alone, as itself
            out.append(Packed(member, payload, (member,)))
            continue
        groups.append(member.group)
        payloads.append(payload)
        carried.append(member)
        size += cost
    flush()
    return out


@dataclass(frozen=True, slots=True)
class PackedBytes:
    """One message built from members already encoded: its bytes, the positions of the members it carries (in
    order), and the carrier's id when it is a batch (None: a single member, sent as its own bytes)."""

    payload: bytes
    indexes: tuple[int, ...]
    batch_id: str | None


def pack_encoded(node: str, src: str, members: Sequence[tuple[Group | None, bytes]], *, max_members: int,
                 max_bytes: int) -> list[PackedBytes]:
    """As ``pack``, for members kept as bytes (EdgeHub's outbox holds each entry encoded): nothing is decoded or
    encoded again but the carriers. A member whose group is None (an entry stored before groups were kept, so
    one the frame cannot name) goes alone, as does one too large to share a batch; a lone member between
    batches keeps its place in the order."""
    if max_members < 1 or max_bytes < MIN_BYTES:
        raise ValueError(f"a batch needs room for a member: max_members {max_members}, max_bytes {max_bytes}")
    out: list[PackedBytes] = []
    base = len(_encode(_carrier(node, src, None, [], []))) + _LIST_GROWTH
    groups: list[Group] = []
    indexes: list[int] = []
    size = base

    def flush() -> None:
        nonlocal size
        if len(indexes) == 1:
            out.append(PackedBytes(members[indexes[0]][1], (indexes[0],), None))
        elif indexes:
            envelope = _carrier(node, src, None, groups, [members[i][1] for i in indexes])
            out.append(PackedBytes(_encode(envelope), tuple(indexes), envelope.id))
        groups.clear()
        indexes.clear()
        size = base

    for index, (group, payload) in enumerate(members):
        cost = len(payload) + _MEMBER_OVERHEAD
        if group is None or base + cost > max_bytes:
            flush()
            out.append(PackedBytes(payload, (index,), None))
            continue
        if indexes and (len(indexes) >= max_members or size + cost > max_bytes):
            flush()
        groups.append(group)
        indexes.append(index)
        size += cost
    flush()
    return out


def _carrier(node: str, src: str, parent: str | None, groups: Sequence[Group], payloads: Sequence[bytes]) -> Envelope:
    return Envelope(node=node, src=src, group=Group.HUB, op=Op.BATCH, parent=parent,
                    body={"groups": [g.value for g in groups], "members": list(payloads)})


def _encode(envelope: Envelope) -> bytes:
    """Plain msgpack: the size was kept under the limit while packing (the estimate errs on the large side)."""
    data: bytes = msgpack.packb(envelope.to_map(), use_bin_type=True)
    return data
