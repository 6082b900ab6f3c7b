"""Taking a batch off a work queue: what MetaManager's committer and DeviceTwin's loop each commit in one
SQLite transaction, since a commit (an fsync) costs the same for one write as for a hundred."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _one(_item: object) -> int:
    return 1


def take_batch(work: queue.Queue[T | None], first: T, limit: int, weight: Callable[[T], int] = _one) -> list[T]:
    """``first`` and whatever else is queued already, up to ``limit`` (counted by ``weight``: an item that is
    itself a batch from the link weighs its members), without waiting; the last item taken may go over. None on
    the queue is the stop sentinel: it ends the batch and is put back, so that the loop sees it on its next
    wait."""
    batch = [first]
    total = weight(first)
    while total < limit:
        try:
            item = work.get_nowait()
        except queue.Empty:
            break
        if item is None:
            work.put(None)
            break
        batch.append(item)
        total += weight(item)
    return batch
