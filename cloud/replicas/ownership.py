"""Which live replica owns which node: rendezvous (highest-random-weight) hashing. Pure functions, no I/O.

Every replica computes the assignment from the same two inputs (the live members' identities, read from
their Leases, and a node's name), so they agree without talking to each other and without an assignment
object that someone would have to write and everyone would have to trust. Rendezvous hashing rather than a
ring: a node's owner is the member with the highest hash of (member, node), so when a member leaves only its
own nodes move (each to the member that was its second choice), when one joins it takes about 1/N of every
other member's nodes and nothing else moves, and the spread is even without virtual nodes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass


def weight(member: str, node: str) -> int:
    """The member's weight for this node: a stable 64-bit hash (not Python's ``hash``, which is salted per
    process, so two replicas would disagree)."""
    digest = hashlib.blake2b(f"{member}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(node: str, members: Iterable[str]) -> str | None:
    """The member that owns ``node``; None when there is no live member. Ties (a 2^-64 chance) go to the
    greater identity, so that every replica still agrees."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (weight(member, node), member)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


def assign(nodes: Iterable[str], members: Collection[str]) -> dict[str, str]:
    """Every node's owner; empty when there is no live member (nobody serves, rather than a guess)."""
    if not members:
        return {}
    return {node: owner_ for node in nodes if (owner_ := owner(node, members)) is not None}


def owned_by(member: str, nodes: Iterable[str], members: Collection[str]) -> set[str]:
    """The nodes ``member`` serves; none when it is not among the live ``members`` (a replica that lost its
    own Lease serves nothing)."""
    if member not in members:
        return set()
    return {node for node in nodes if owner(node, members) == member}


@dataclass(frozen=True)
class Move:
    node: str
    before: str | None
    after: str | None


def moves(nodes: Iterable[str], before: Collection[str], after: Collection[str]) -> list[Move]:
    """The nodes whose owner differs between the two memberships, in node order."""
    found = []
    for node in sorted(set(nodes)):
        old, new = owner(node, before), owner(node, after)
        if old != new:
            found.append(Move(node, old, new))
    return found


def balance(assignment: Mapping[str, str], members: Collection[str]) -> float:
    """Max over mean nodes per member (1.0 is perfectly even); members owning nothing count as 0."""
    if not members or not assignment:
        return 1.0
    counts = Counter(assignment.values())
    mean = len(assignment) / len(members)
    return max(counts.get(member, 0) for member in members) / mean
