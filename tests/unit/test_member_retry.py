"""The reconnect policy over a broker member list (runtime.backoff MemberRetry), on a clock the test moves."""

from __future__ import annotations

import random

from runtime.backoff import MEMBER_HOP_S, Backoff, MemberRetry

HOP_MAX = MEMBER_HOP_S * 1.5


def retry(members: int) -> MemberRetry:
    rng = random.Random(7)
    return MemberRetry(members, Backoff(initial=1.0, maximum=5.0, jitter=0.0, _rng=rng), _rng=rng)


def test_a_failure_hops_to_the_next_member_and_the_backoff_waits_once_every_member_failed() -> None:
    policy = retry(3)
    assert policy.failed(0.0) <= HOP_MAX  # the dead member
    assert policy.failed(0.1) <= HOP_MAX  # a survivor that refused at once
    assert policy.failed(0.2) >= 0.8  # the round took 0.2 s of the 1 s backoff
    assert policy.backoff.attempts == 1


def test_a_round_that_took_longer_than_the_backoff_waits_only_a_hop() -> None:
    """Two survivors each answered a CONNECT after NATS's 2 s JetStream timeout while the cluster elected: the
    next round starts at once, so a link is back within a hop and an attempt's time of the election."""
    policy = retry(3)
    now = 0.0
    for _ in range(4):  # four rounds; the backoff grows to 5 s meanwhile
        now += 0.1
        assert policy.failed(now) <= HOP_MAX  # the dead member refuses at once
        now += 2.0
        assert policy.failed(now) <= HOP_MAX
        now += 2.0
        delay = policy.failed(now)
        assert delay <= max(HOP_MAX, 5.0 - 4.1) + 1e-9
        now += delay
    assert policy.backoff.attempts == 4


def test_members_refusing_at_once_get_the_whole_backoff_from_the_rounds_start() -> None:
    policy = retry(1)
    assert 0.99 <= policy.failed(0.0) <= 1.0  # the first round: its attempt took no time
    assert 1.99 <= policy.failed(1.0) <= 2.0  # the next round started when the wait ended
    assert 3.5 - 1e-9 <= policy.failed(3.5) <= 3.5  # this attempt took 0.5 s of the 4 s


def test_a_good_connect_starts_over() -> None:
    policy = retry(2)
    policy.failed(0.0)
    policy.failed(0.1)
    assert policy.backoff.attempts == 1
    policy.connected()
    assert (policy.tried, policy.round_started, policy.backoff.attempts) == (0, None, 0)
    assert policy.failed(100.0) <= HOP_MAX  # a new round: the next member first
    assert policy.round_started == 100.0
