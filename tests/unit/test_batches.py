"""A batch off a work queue: what is queued already, up to the limit, and the stop sentinel left for the loop."""

from __future__ import annotations

import queue

from edge.batches import take_batch
from edge.devicetwin.component import MAX_BATCH as DEVICETWIN_MAX_BATCH
from edge.devicetwin.component import Relist, requests_weight
from schemas.devicebus import DeviceRequest, requests_body
from schemas.envelope import Envelope, Group, Op


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


def test_devicetwin_counts_eventbus_envelopes_by_their_requests() -> None:
    """A backlog of EventBus's envelopes is applied a few hundred requests at a time, not as one batch of
    thousands whose answers all wait for the last one."""
    def requests(count: int) -> Envelope:
        body = requests_body([DeviceRequest("default", "dev-1", "twin/update", b"{}")] * count)
        return Envelope(node="n1", src="eventbus", group=Group.TWIN, op=Op.UPDATE, body=body)

    backlog: list[Envelope | Relist] = [requests(400) for _ in range(25)]  # 10,000 requests
    work: queue.Queue[Envelope | Relist | None] = queue.Queue()
    for envelope in backlog[1:]:
        work.put(envelope)
    assert take_batch(work, backlog[0], DEVICETWIN_MAX_BATCH, requests_weight) == backlog[:2]
    cloud = Envelope(node="n1", src="metamanager", group=Group.RESOURCE, op=Op.UPDATE, body={"requests": "x"})
    assert [requests_weight(item) for item in (cloud, requests(0), Relist({}))] == [1, 1, 1]
