"""A batch off a work queue: what is queued already, up to the limit, and the stop sentinel left for the loop."""

from __future__ import annotations

import queue

from edge.batches import take_batch


def _queued(*items: int | None) -> queue.Queue[int | None]:
    work: queue.Queue[int | None] = queue.Queue()
    for item in items:
        work.put(item)
    return work


def test_what_is_queued_up_to_the_limit() -> None:
    work = _queued(2, 3, 4, 5)
    assert take_batch(work, 1, 3) == [1, 2, 3]
    assert take_batch(work, 9, 10) == [9, 4, 5]
    assert work.empty()


def test_the_stop_sentinel_ends_the_batch_and_stays_queued() -> None:
    work = _queued(2, None, 3)
    assert take_batch(work, 1, 10) == [1, 2]
    assert [work.get_nowait() for _ in range(2)] == [3, None]  # put back behind what was left


def test_items_count_by_their_weight() -> None:
    work = _queued(5, 1, 1, 7)
    assert take_batch(work, 2, 8, weight=lambda n: n or 0) == [2, 5, 1]  # 8 reached: the rest waits
    assert take_batch(work, 1, 8, weight=lambda n: n or 0) == [1, 1, 7]  # the last one may go over
