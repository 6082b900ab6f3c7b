"""A component's retained status (runtime/component.py Health): "up" at each connect and once more after
``repeat_after_s`` (a NATS member can miss a retained message published on another just as it subscribes), and
nothing after "down"."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

from runtime.bus import Bus
from runtime.component import Health
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import Envelope
from tests.fixtures.processes import wait_until


class Settings:
    node = "cloud"


class FakeBus:
    """Runs what is scheduled at once, on the caller's thread, and records the statuses published."""

    settings = Settings()

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()

    def call_soon(self, fn: Callable[[], None]) -> None:
        fn()

    def publish(self, topic: str, envelope: Envelope, *, retain: bool = False, timeout: float | None = None,
                qos: int = 1) -> bool:
        with self.lock:
            self.published.append((topic, ComponentStatus.parse(envelope.body).state, retain))
        return True

    def states(self) -> list[str]:
        with self.lock:
            return [state for _topic, state, _retain in self.published]


def test_up_at_the_connect_and_once_more_after_the_repeat_delay() -> None:
    bus = FakeBus()
    status = Health(cast(Bus, bus), "cloudhub", replica="cloudhub-1", repeat_after_s=0.2)
    status.connected()
    assert bus.states() == ["up"]
    wait_until(lambda: len(bus.states()) == 2, timeout=5, what="the repeated status")
    assert bus.published == [(topics.status("cloudhub", "cloudhub-1"), "up", True)] * 2
    status.stop()


def test_nothing_after_down_not_even_a_pending_repeat() -> None:
    bus = FakeBus()
    status = Health(cast(Bus, bus), "edgecontroller", repeat_after_s=0.2)
    status.connected()
    repeat = status._repeat
    assert repeat is not None
    status.publish("down")
    status.publish("up")
    status.connected()
    assert repeat.finished.wait(5), "the pending repeat is cancelled by the down"
    assert status._repeat is repeat, "no repeat is started after the down"
    assert bus.states() == ["up", "down"]


def test_a_reconnect_restarts_the_repeat_rather_than_adding_one() -> None:
    bus = FakeBus()
    status = Health(cast(Bus, bus), "devicecontroller", repeat_after_s=0.3)
    status.connected()
    first = status._repeat
    status.connected()
    second = status._repeat
    assert first is not None
    assert second is not None
    assert first is not second
    assert first.finished.wait(5)
    wait_until(lambda: len(bus.states()) == 3, timeout=5, what="the repeat after the second connect")
    assert second.finished.wait(5)
    assert bus.states() == ["up", "up", "up"], "the first connect's repeat was cancelled"
    status.stop()


class SlowBus(FakeBus):
    """A publish that waits (as one does for window slots the network thread frees) until released; what is
    scheduled is kept, as the bus's handler thread would take it later."""

    def __init__(self) -> None:
        super().__init__()
        self.publishing = threading.Event()
        self.release = threading.Event()
        self.scheduled: list[Callable[[], None]] = []

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.scheduled.append(fn)

    def publish(self, topic: str, envelope: Envelope, *, retain: bool = False, timeout: float | None = None,
                qos: int = 1) -> bool:
        self.publishing.set()
        assert self.release.wait(10)
        return super().publish(topic, envelope, retain=retain, timeout=timeout, qos=qos)


def test_a_connect_does_not_wait_for_a_status_being_published() -> None:
    """connected() runs on the network thread: it must not wait behind a publish that may itself be waiting
    for the network thread."""
    bus = SlowBus()
    status = Health(cast(Bus, bus), "cloudhub", repeat_after_s=60)
    publisher = threading.Thread(target=status.publish, args=("up",))
    publisher.start()
    try:
        assert bus.publishing.wait(5)
        connect = threading.Thread(target=status.connected)
        connect.start()
        connect.join(timeout=5)
        assert not connect.is_alive(), "connected() waited for the publish in progress"
        assert status._repeat is not None
        assert len(bus.scheduled) == 1  # the "up" of the connect, for the handler thread
    finally:
        bus.release.set()
        publisher.join(timeout=10)
        status.stop()
    assert bus.states() == ["up"]
