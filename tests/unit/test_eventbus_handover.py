"""EventBus's hand-over thread outlives a publish that fails: it is the devices' only way to DeviceTwin.

A publish that raised (the broker's window full past its timeout) used to end the thread, and every later
reading of the node was taken by the broker and went nowhere, while everything else on the node worked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from edge.eventbus.door import EventBus, EventBusSettings
from runtime.connection import PublishTimeout
from runtime.counters import Counters
from schemas import topics
from schemas.devicebus import parse_requests
from schemas.envelope import Envelope, Group, Op
from tests.fixtures.processes import wait_until


class FlakyBus:
    """Refuses the first ``failures`` publishes as a full window would, then takes them."""

    inbox = topics.inbox(topics.Side.EDGE, "eventbus")

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.counters = Counters()
        self.published: list[Envelope] = []
        self._lock = threading.Lock()

    def handle(self, *_args: Any) -> None:
        pass

    def handle_raw(self, *_args: Any) -> None:
        pass

    def take_raw(self, *_args: Any) -> None:
        pass

    def envelope(self, group: Group, op: Op, **fields: Any) -> Envelope:
        return Envelope(node="edge-1", src="eventbus", group=group, op=op, **fields)

    def publish(self, _topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        with self._lock:
            if self.failures:
                self.failures -= 1
                raise PublishTimeout("100 publishes still unacknowledged after 30 s")
            self.published.append(envelope)


def handed_over(bus: FlakyBus) -> list[bytes]:
    return [r.payload for e in list(bus.published) for r in parse_requests(e.body) if not isinstance(r, Exception)]


@contextlib.contextmanager
def running(bus: FlakyBus) -> Iterator[EventBus]:
    door = EventBus(EventBusSettings(), bus)  # type: ignore[arg-type]
    door.start()
    try:
        yield door
    finally:
        door.close()


def reading(door: EventBus, n: int) -> None:
    door.on_device(topics.device("default", "thermo-1", "twin/update"), b'{"n": %d}' % n)


def test_a_failed_hand_over_is_tried_again_and_later_readings_still_go() -> None:
    bus = FlakyBus(failures=1)
    with running(bus) as door:
        reading(door, 1)
        wait_until(lambda: handed_over(bus) == [b'{"n": 1}'], timeout=10,
                   what="the first reading handed over after a failure")
        reading(door, 2)
        wait_until(lambda: handed_over(bus) == [b'{"n": 1}', b'{"n": 2}'], timeout=10,
                   what="a later reading handed over")
        assert bus.counters.get("handler_errors") == 1


def test_a_lone_reading_goes_at_once_and_a_burst_goes_in_few_batches() -> None:
    bus = FlakyBus(failures=0)
    with running(bus) as door:
        reading(door, 0)
        wait_until(lambda: len(bus.published) == 1, timeout=10, what="the lone reading handed over")
        for n in range(1, 201):  # within the interval after that batch: they wait for its end, together
            reading(door, n)
        wait_until(lambda: len(handed_over(bus)) == 201, timeout=10, what="the burst handed over")
        assert handed_over(bus) == [b'{"n": %d}' % n for n in range(201)], "in order, each once"
        assert len(bus.published) <= 3, f"a burst of 200 in {len(bus.published) - 1} batches"
