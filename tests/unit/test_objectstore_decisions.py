"""The one decision both MetaManager stores apply to an upsert and a delete (edge.metamanager.objectstore), as
a pure function of what is held under the key and its tombstone: every outcome, with the writes it asks for.
The stores' own tests (test_edge_stores.py, test_metamanager_tombstones.py) check they make those writes."""

from __future__ import annotations

from edge.metamanager.objectstore import Decision, Outcome, Row, Version, decide_delete, decide_upsert

VALUE = b"\x81\xa1k\xa1v"  # any encoding: carried through, never read


def upsert(held: Version | None, tomb: int | None, rv: str | None, uid: str | None = "u1") -> Decision:
    return decide_upsert(held, tomb, rv, uid, VALUE)


def test_a_new_object_is_stored_and_drops_any_tombstone_the_store_keeps() -> None:
    # drop_tombstone even with none within its age: the store may still keep one past it, which goes too
    assert upsert(None, None, "5") == Decision(Outcome.APPLIED, put=Row("5", "u1", VALUE), drop_tombstone=True)
    assert upsert(None, None, None, uid=None) == Decision(Outcome.APPLIED, put=Row("0", None, VALUE),
                                                          drop_tombstone=True)  # no version: stored as "0"


def test_a_newer_update_replaces_what_is_held() -> None:
    assert upsert(Version("5", "u1"), None, "6") == Decision(Outcome.APPLIED, put=Row("6", "u1", VALUE))
    # a recreated object (another UID) at a greater revision too
    assert upsert(Version("5", "u1"), None, "9", uid="u2") == Decision(Outcome.APPLIED, put=Row("9", "u2", VALUE))
    # opaque versions: no order to trust, a different one applies
    assert upsert(Version("b", "u1"), None, "a") == Decision(Outcome.APPLIED, put=Row("a", "u1", VALUE))


def test_an_older_update_is_refused_and_writes_nothing() -> None:
    assert upsert(Version("5", "u1"), None, "4") == Decision(Outcome.STALE)
    assert upsert(Version("5", "u1"), None, "3", uid="u0") == Decision(Outcome.STALE)  # an older incarnation's


def test_the_same_version_again_is_a_duplicate_acknowledged_without_a_write() -> None:
    assert upsert(Version("5", "u1"), None, "5") == Decision(Outcome.STALE)
    assert upsert(Version("a", "u1"), None, "a") == Decision(Outcome.STALE)
    assert upsert(Version("a", "u1"), None, "a", uid="u2") == Decision(Outcome.APPLIED, put=Row("a", "u2", VALUE))


def test_a_delete_removes_what_is_held_and_leaves_a_tombstone() -> None:
    assert decide_delete(Version("5", "u1"), None, "u1", "6") == Decision(Outcome.DELETED, remove=True, tombstone=6)
    assert decide_delete(Version("5", None), None, "any", "5") == Decision(Outcome.DELETED, remove=True, tombstone=5)
    assert decide_delete(Version("5", "u1"), None, None, None) == Decision(Outcome.DELETED, remove=True)
    # "0" is no version known (EdgeController's "pod gone"), an opaque one orders nothing: no tombstone
    assert decide_delete(Version("8", "u1"), None, "u1", "0") == Decision(Outcome.DELETED, remove=True)
    assert decide_delete(Version("a", "u1"), None, "u1", "z") == Decision(Outcome.DELETED, remove=True)


def test_a_delete_of_another_incarnation_or_older_than_what_is_held_writes_nothing() -> None:
    assert decide_delete(Version("6", "u2"), None, "u1", "7") == Decision(Outcome.ABSENT)
    assert decide_delete(Version("8", "u1"), None, "u1", "5") == Decision(Outcome.STALE)


def test_a_delete_of_what_is_not_held_still_leaves_a_tombstone() -> None:
    assert decide_delete(None, None, "u1", "6") == Decision(Outcome.ABSENT, tombstone=6)
    assert decide_delete(None, 6, None, "4") == Decision(Outcome.ABSENT, tombstone=6)  # an older one does not lower it
    assert decide_delete(None, 6, None, "9") == Decision(Outcome.ABSENT, tombstone=9)
    assert decide_delete(None, 6, None, "opaque") == Decision(Outcome.ABSENT)  # the tombstone stays as it is
    assert decide_delete(None, None, None, None) == Decision(Outcome.ABSENT)


def test_a_re_add_at_or_below_the_tombstone() -> None:
    assert upsert(None, 6, "5") == Decision(Outcome.STALE)  # older than the delete: redelivered, refused
    # at the delete's version: placed on the node again unchanged (a resync deletes and re-adds that way)
    assert upsert(None, 6, "6") == Decision(Outcome.APPLIED, put=Row("6", "u1", VALUE), drop_tombstone=True)


def test_a_re_add_above_the_tombstone_applies_and_drops_it() -> None:
    assert upsert(None, 6, "9", uid="u2") == Decision(Outcome.APPLIED, put=Row("9", "u2", VALUE), drop_tombstone=True)
    assert upsert(None, 6, "abc") == Decision(Outcome.APPLIED, put=Row("abc", "u1", VALUE), drop_tombstone=True)
