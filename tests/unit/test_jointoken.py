"""Join tokens: what is accepted and every way one is refused, with the reason a user can act on."""

from __future__ import annotations

import pytest

from schemas import jointoken
from schemas.jointoken import JoinToken, TokenError

KEY = b"k" * 32
CA = "a" * 64


def test_a_fresh_token_round_trips_and_passes() -> None:
    token = jointoken.issue(KEY, CA, 3600, now=1000)
    parsed = JoinToken.parse(str(token) + "\n")
    assert parsed == token
    jointoken.check(parsed, KEY, CA, now=1000 + 3599)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda t: t, "expired"),
    (lambda t: JoinToken(t.ca_hash, t.token_id, t.expires + 10_000, t.signature), "altered or forged"),
    (lambda t: JoinToken(t.ca_hash, "0" * 16, t.expires, t.signature), "altered or forged"),
    (lambda t: JoinToken("b" * 64, t.token_id, t.expires, t.signature), "another cluster CA"),
])
def test_refusals(change: object, reason: str) -> None:
    token = jointoken.issue(KEY, CA, 60, now=1000)
    with pytest.raises(TokenError, match=reason):
        jointoken.check(change(token), KEY, CA, now=1061)  # type: ignore[operator]


def test_revoked_and_foreign_keys() -> None:
    token = jointoken.issue(KEY, CA, 60, now=1000)
    with pytest.raises(TokenError, match="revoked"):
        jointoken.check(token, KEY, CA, revoked_ids={token.token_id}, now=1001)
    with pytest.raises(TokenError, match="forged"):
        jointoken.check(token, b"x" * 32, CA, now=1001)


@pytest.mark.parametrize("text", ["", "a.b.c", f"{CA}.zz.1.sig", f"{CA}.{'0' * 16}.soon.sig", f"{CA}.{'0' * 16}.1."])
def test_malformed(text: str) -> None:
    with pytest.raises(TokenError, match="malformed"):
        JoinToken.parse(text)
