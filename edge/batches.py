"""Taking a batch off a work queue: what MetaManager's committer and DeviceTwin's loop each commit in one
SQLite transaction, since a commit (an fsync) costs the same for one write as for a hundred."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def take_batch(work: queue.Queue[T | None], first: T, limit: int) -> list[T]:
    """``first`` and whatever else is queued already, up to ``limit`` items, without waiting. None on the queue
    is the stop sentinel: it ends the batch and is put back, so that the loop sees it on its next wait."""
    batch = [first]
    while len(batch) < limit:
        try:
            item = work.get_nowait()
        except queue.Empty:
            break
        if item is None:
            work.put(None)
            break
        batch.append(item)
    return batch
