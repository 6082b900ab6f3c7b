"""bench twin reports the median round: each round's edge rate against its own baseline, measured just before."""

from __future__ import annotations

from edgehive.bench.twin import ECHO_PREFIX, _median_round
from edgehive.bench.twinecho import DEVICE_PREFIX
from schemas import topics


def test_the_median_round_is_reported_whole() -> None:
    pairs = [(5000.0, 4000.0), (5500.0, 5225.0), (4400.0, 4000.0)]  # ratios 0.8, 0.95, 0.909
    ratio, (baseline, edge) = _median_round(pairs)
    assert (baseline, edge) == (4400.0, 4000.0)
    assert round(ratio, 3) == 0.909


def test_of_an_even_number_the_lower_middle_round() -> None:
    ratio, pair = _median_round([(100.0, 90.0), (100.0, 80.0), (100.0, 95.0), (100.0, 85.0)])
    assert pair == (100.0, 85.0)
    assert ratio == 0.85


def test_the_echo_is_out_of_eventbus_way() -> None:
    """EventBus subscribes to the device request filters: none of them matches the echo's devices' topics."""
    echo_update = f"{ECHO_PREFIX}/bench/dev-0/twin/update"
    assert not any(topics.matches(f, echo_update) for f in topics.device_requests())
    assert any(topics.matches(f, f"{DEVICE_PREFIX}/bench/dev-0/twin/update") for f in topics.device_requests())
