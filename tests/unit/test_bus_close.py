"""A request waiting for a reply ends as soon as its bus closes, not at its deadline: a controller's resync waits
up to 10 s for a node's answer, and Python waits for such worker threads before the process can exit (an
EdgeController took ten seconds to stop after SIGTERM)."""

from __future__ import annotations

import threading

import pytest

from runtime.bus import Bus, BusClosed, BusSettings, RequestTimeout
from runtime.connsettings import ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until


def quiet_bus() -> Bus:
    """A bus whose publishes go nowhere (no broker): no reply ever comes."""
    bus = Bus(BusSettings(ConnectionSettings(BrokerUrl.parse("mqtt://127.0.0.1:1"), "edgecontroller"),
                          "edgecontroller", topics.Side.CLOUD, "cloud"))
    bus.publish = lambda *_args, **_kwargs: True  # type: ignore[method-assign]
    return bus


def query() -> Envelope:
    return Envelope(node="edge-1", src="edgecontroller", group=Group.RESOURCE, op=Op.QUERY,
                    res=ResourceKey("default", "pod", "p"))


def test_a_waiting_request_ends_when_the_bus_closes() -> None:
    bus = quiet_bus()
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            bus.request("edgehive/cloud/cloudhub", query(), timeout=600)
        except BaseException as exc:  # what it raised is the test's answer
            outcome.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    wait_until(lambda: bool(bus._waiters), timeout=10, what="the request to wait for its reply")
    bus.close(drain_timeout=0)
    asker.join(10)
    assert not asker.is_alive(), "the request still waits after close"
    (raised,) = outcome
    assert isinstance(raised, BusClosed)
    assert isinstance(raised, RequestTimeout)
    assert "edgecontroller is stopping" in str(raised)
    assert not bus._waiters


def test_a_request_after_close_is_refused_at_once() -> None:
    bus = quiet_bus()
    bus.close(drain_timeout=0)
    with pytest.raises(BusClosed):
        bus.request("edgehive/cloud/cloudhub", query(), timeout=600)
