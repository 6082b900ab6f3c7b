"""The sender's linger (runtime/linger.py): a burst is held, a send after a quiet spell goes at once."""

from __future__ import annotations

import pytest

from runtime.linger import Linger


def test_the_first_send_goes_at_once() -> None:
    assert Linger(0.05).hold(now=0.0) == 0.0


def test_a_send_within_the_interval_waits_out_the_rest_of_it() -> None:
    linger = Linger(0.05)
    linger.sent(10.0)
    assert linger.hold(10.02) == pytest.approx(0.03)
    assert linger.until() == pytest.approx(10.05)


def test_a_send_after_a_quiet_spell_goes_at_once() -> None:
    linger = Linger(0.05)
    linger.sent(10.0)
    assert linger.hold(10.2) == 0.0


def test_no_linger_never_holds() -> None:
    linger = Linger(0.0)
    linger.sent(10.0)
    assert linger.hold(10.0) == 0.0


@pytest.mark.parametrize("bad", [-0.001, 1.001])
def test_an_interval_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="linger must be 0 to 1 s"):
        Linger(bad)
