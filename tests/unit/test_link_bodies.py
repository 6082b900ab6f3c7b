"""The link protocol's bodies: what nodes in the field send is read the same, written the same, and a bad body
is refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.envelope import Op
from schemas.fields import BodyError
from schemas.link import (
    MAX_PAGE,
    Keepalive,
    KeepaliveAnswer,
    LinkChange,
    ListedItem,
    ListingPage,
    PageQuery,
    SessionNews,
)
from schemas.resource import ResourceKey

CM = ResourceKey("default", "configmap", "c")


@pytest.mark.parametrize(("cls", "body"), [
    (Keepalive, {"outbox": 3}),
    (Keepalive, {"outbox": 3, "batch_bytes": 1048576}),
    (Keepalive, {"batch_bytes": 65536}),  # the hello of a node that takes batches
    (KeepaliveAnswer, {"batch_bytes": 262144}),  # CloudHub's answer: batches up to this size go up
    (KeepaliveAnswer, {}),  # a cloud with batches off
    (LinkChange, {"state": "down", "reason": "link lost"}),  # the bridge's
    (LinkChange, {"reason": "starting"}),  # EdgeHub's cloud-link announcement
    (SessionNews, {"session": "0123456789ab", "state": "connected"}),
    (SessionNews, {"session": "0123456789ab", "state": "connected", "batch_bytes": 262144}),  # inbox batches
    (PageQuery, {"list": "pod", "after": "", "limit": 500}),
    (ListingPage, {"items": [{"key": str(CM), "rv": "3", "uid": "u1"}], "next": None}),
    (ListingPage, {"items": [{"key": str(CM), "rv": "3", "uid": None, "object": {"data": {}}}], "next": str(CM)}),
])
def test_the_wire_format_is_kept(cls: Any, body: dict[str, Any]) -> None:
    assert cls.parse(body).as_body() == body


def test_absent_fields_take_the_protocols_defaults() -> None:
    assert Keepalive.parse(None) == Keepalive(None)  # EdgeHub's hello
    assert Keepalive().as_body() is None
    assert PageQuery.parse(None) == PageQuery(None, "", 200)
    assert PageQuery.parse({"limit": 10}) == PageQuery(None, "", 10)
    assert PageQuery(None, "", 10).as_body() == {"after": "", "limit": 10}
    assert LinkChange.parse({}) == LinkChange("", None)
    assert ListingPage.parse({}) == ListingPage((), None)
    assert ListingPage.parse({"items": [{"key": str(CM), "rv": "1"}]}).items == (ListedItem(CM, "1", None),)
    assert Keepalive.parse({"outbox": 1, "future": "ignored"}) == Keepalive(1)


@pytest.mark.parametrize(("cls", "body", "field"), [
    (Keepalive, [1], "body"),
    (Keepalive, {"outbox": "3"}, "body.outbox"),
    (Keepalive, {"outbox": -1}, "body.outbox"),
    (Keepalive, {"outbox": True}, "body.outbox"),
    (Keepalive, {"batch_bytes": 0}, "body.batch_bytes"),
    (Keepalive, {"batch_bytes": "1024"}, "body.batch_bytes"),
    (LinkChange, {"state": "sideways"}, "body.state"),
    (LinkChange, {"reason": ["x"]}, "body.reason"),
    (SessionNews, None, "body"),
    (SessionNews, {"state": "connected"}, "body.session"),
    (SessionNews, {"session": "", "state": "connected"}, "body.session"),
    (SessionNews, {"session": "s1"}, "body.state"),
    (SessionNews, {"session": "s1", "state": "up"}, "body.state"),
    (PageQuery, "pod", "body"),
    (PageQuery, {"list": 5}, "body.list"),
    (PageQuery, {"after": 0}, "body.after"),
    (PageQuery, {"limit": 0}, "body.limit"),
    (PageQuery, {"limit": MAX_PAGE + 1}, "body.limit"),
    (PageQuery, {"limit": "10"}, "body.limit"),
    (PageQuery, {"limit": True}, "body.limit"),
    (ListingPage, {"items": {}}, "body.items"),
    (ListingPage, {"items": [5]}, "body.items[0]"),
    (ListingPage, {"items": [{"key": "nope", "rv": "1"}]}, "body.items[0].key"),
    (ListingPage, {"items": [{"key": str(CM), "rv": 1}]}, "body.items[0].rv"),
    (ListingPage, {"items": [{"key": str(CM), "rv": "1", "uid": 2}]}, "body.items[0].uid"),
    (ListingPage, {"items": [{"key": str(CM), "rv": "1", "object": []}]}, "body.items[0].object"),
    (ListingPage, {"items": [], "next": 3}, "body.next"),
])
def test_a_bad_body_is_refused_with_the_field_named(cls: Any, body: Any, field: str) -> None:
    with pytest.raises(BodyError) as refused:
        cls.parse(body)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


def test_a_state_that_repeats_the_op_must_agree_with_it() -> None:
    SessionNews("s1", True).check_op(Op.CONNECTED)
    LinkChange("x").check_op(Op.DISCONNECTED)  # no state: either op
    with pytest.raises(BodyError, match=r"body\.state"):
        SessionNews("s1", True).check_op(Op.DISCONNECTED)
    with pytest.raises(BodyError, match=r"body\.state"):
        LinkChange("x", up=False).check_op(Op.CONNECTED)
    with pytest.raises(BodyError) as refused:
        LinkChange("x").check_op(Op.UPDATE)
    assert refused.value.field == "op"


def test_a_refusal_quotes_no_more_than_a_line_of_what_the_sender_wrote() -> None:
    with pytest.raises(BodyError) as refused:
        ListingPage.parse({"items": [{"key": "x" * 100_000, "rv": "1"}]})
    assert len(str(refused.value)) < 400
