"""Credit given back in batches (runtime.streamflow.Grants): one credit frame per quarter window, never a stall."""

from __future__ import annotations

from runtime.streamflow import Grants, SendWindow

WINDOW = 1024 * 1024


def test_credit_is_held_back_until_a_quarter_window_was_consumed() -> None:
    grants = Grants(WINDOW)
    assert [grants.consumed(64 * 1024) for _ in range(3)] == [0, 0, 0]
    assert grants.consumed(64 * 1024) == WINDOW // 4
    assert grants.consumed(1) == 0


def test_a_sender_that_used_its_whole_window_gets_it_all_back() -> None:
    """The sender sends its window in odd-sized chunks and the reader consumes each: what is still held back is
    less than a batch, so the sender, out of credit, is given most of its window back, never left stalled."""
    window, grants = SendWindow(WINDOW), Grants(WINDOW)
    sizes: list[int] = []
    while window.credit:
        sizes.append(window.take(100_000))
    given = sum(grants.consumed(size) for size in sizes)
    assert WINDOW - given < grants.batch
    window.grant(given)
    assert window.credit > WINDOW - grants.batch
