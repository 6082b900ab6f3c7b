"""Service account tokens at the edge: the rotation rule, keeping them on disk, waiting, refusing (tokens.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.edged.projection import TokenUnavailable
from edge.edged.tokens import MAX_AGE_S, KeptToken, TokenFetchError, TokenKeeper, refresh_due
from schemas.timefmt import rfc3339
from schemas.tokens import TokenGrant, TokenQuery

QUERY = TokenQuery("ns", "p", "u-1", "default", (), 3607)
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Cloud:
    """Grants tokens numbered in order, valid for the asked lifetime; ``down`` makes it unreachable."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.down = False
        self.asked = 0

    def __call__(self, query: TokenQuery) -> TokenGrant:
        if self.down:
            raise TokenFetchError("edgehub answered 503: the cloud link is down")
        self.asked += 1
        return TokenGrant(f"token-{self.asked}", rfc3339(self.clock.now + query.expiration_seconds))


def keeper(tmp_path: Path) -> tuple[TokenKeeper, Clock, Cloud]:
    clock = Clock()
    cloud = Cloud(clock)
    return TokenKeeper(cloud, lambda uid: tmp_path / uid, clock), clock, cloud


def test_refresh_rule_is_kubelets() -> None:
    hour = KeptToken("t", T0, T0 + 3600)
    assert not refresh_due(hour, T0 + 0.79 * 3600)
    assert refresh_due(hour, T0 + 0.8 * 3600)
    year = KeptToken("t", T0, T0 + 365 * 86400)
    assert not refresh_due(year, T0 + MAX_AGE_S - 1)
    assert refresh_due(year, T0 + MAX_AGE_S)  # older than 24 h, however long it is valid
    assert refresh_due(KeptToken("t", T0, T0 - 10), T0)  # expired on arrival (clocks apart): asked again


def test_a_token_is_asked_once_then_rotated_before_expiry(tmp_path: Path) -> None:
    tokens, clock, cloud = keeper(tmp_path)
    assert tokens.token(QUERY, "v") == b"token-1"
    generation = tokens.stamp("u-1")
    clock.now += 0.5 * 3607
    assert tokens.token(QUERY, "v") == b"token-1"
    assert tokens.stamp("u-1") == generation  # nothing to do: the plan stands
    assert cloud.asked == 1
    clock.now = T0 + 0.81 * 3607
    assert tokens.stamp("u-1") != generation  # due: the pod's plan is made again, which asks
    assert tokens.token(QUERY, "v") == b"token-2"
    assert cloud.asked == 2


def test_kept_on_disk_for_a_restart_without_the_link(tmp_path: Path) -> None:
    tokens, clock, cloud = keeper(tmp_path)
    assert tokens.token(QUERY, "v") == b"token-1"
    kept = list((tmp_path / "u-1" / "tokens").iterdir())
    assert len(kept) == 1
    assert kept[0].stat().st_mode & 0o777 == 0o600
    cloud.down = True
    restarted = TokenKeeper(cloud, lambda uid: tmp_path / uid, clock)
    assert restarted.token(QUERY, "v") == b"token-1"
    clock.now = T0 + 2 * 3607  # expired while offline: still served, so that the pod can start
    assert restarted.stamp("u-1") > 0
    assert restarted.token(QUERY, "v") == b"token-1"
    cloud.down = False
    clock.now += 11  # past the retry delay
    restarted.stamp("u-1")
    assert restarted.token(QUERY, "v") == b"token-2"


def test_no_token_and_no_link_makes_the_pod_wait_then_retries(tmp_path: Path) -> None:
    tokens, clock, cloud = keeper(tmp_path)
    cloud.down = True
    with pytest.raises(TokenUnavailable, match=r'volume "kube-api-access-1".*ns/default: edgehub answered 503'):
        tokens.token(QUERY, "kube-api-access-1")
    cloud.down = False
    with pytest.raises(TokenUnavailable):  # not asked again before the retry delay
        tokens.token(QUERY, "kube-api-access-1")
    assert cloud.asked == 0
    clock.now += 10
    assert tokens.token(QUERY, "kube-api-access-1") == b"token-1"


def test_a_failed_refresh_keeps_the_old_token_and_tries_again_later(tmp_path: Path) -> None:
    tokens, clock, cloud = keeper(tmp_path)
    tokens.token(QUERY, "v")
    cloud.down = True
    clock.now = T0 + 0.9 * 3607
    first = tokens.stamp("u-1")
    assert tokens.token(QUERY, "v") == b"token-1"
    assert tokens.stamp("u-1") == first  # no new plan until the retry delay has passed
    clock.now += 10
    assert tokens.stamp("u-1") != first


def test_forget_drops_a_gone_pod(tmp_path: Path) -> None:
    tokens, _clock, _cloud = keeper(tmp_path)
    tokens.token(QUERY, "v")
    tokens.forget("u-1")
    assert tokens.stamp("u-1") == 0


def test_a_corrupt_kept_token_is_asked_again(tmp_path: Path) -> None:
    tokens, clock, cloud = keeper(tmp_path)
    tokens.token(QUERY, "v")
    (kept,) = (tmp_path / "u-1" / "tokens").iterdir()
    kept.write_text("{not json")
    assert TokenKeeper(cloud, lambda uid: tmp_path / uid, clock).token(QUERY, "v") == b"token-2"
