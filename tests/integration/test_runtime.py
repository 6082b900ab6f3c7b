"""The component runtime on a real broker: requests, bad input, handler failures, health, SIGTERM."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from runtime.bus import Bus, BusSettings, RequestError
from runtime.connection import ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Group, Op, decode
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import ManagedProcess, wait_until

ECHO_INBOX = topics.inbox(topics.Side.EDGE, "echo")


@pytest.fixture
def broker(edgehive_broker: BrokerFactory) -> Broker:
    return edgehive_broker("amqtt")


@pytest.fixture
def echo(broker: Broker, tmp_path: Path) -> Iterator[ManagedProcess]:
    process = ManagedProcess("echo", [sys.executable, "-m", "tests.components.echo", "--broker", broker.url(),
                                      "--node", "edge-1", "--log-format", "json"], tmp_path / "echo.log").start()
    with TestClient(broker.host, broker.port) as watcher:
        watcher.subscribe(topics.status("echo"))
        wait_until(lambda: decode(watcher.expect().payload).body["state"] == "up", timeout=30,
                   what="echo's retained status 'up'", alive=process)
    yield process
    process.stop()


@pytest.fixture
def tester(broker: Broker) -> Iterator[Bus]:
    bus = Bus(BusSettings(ConnectionSettings(BrokerUrl.parse(broker.url()), client_id="tester"),
                          module="tester", side=topics.Side.EDGE, node="edge-1")).start()
    assert bus.connection.wait_connected(10)
    yield bus
    bus.close()


def status_of(bus: Bus) -> dict[str, object]:
    reply = bus.request(ECHO_INBOX, bus.envelope(Group.HUB, Op.QUERY), timeout=10)
    assert isinstance(reply.body, dict)
    return reply.body


def test_request_response_and_handler_failure(echo: ManagedProcess, tester: Bus) -> None:
    reply = tester.request(ECHO_INBOX, tester.envelope(Group.USER, Op.QUERY, body={"n": 1}), timeout=10)
    assert reply.body == {"echo": {"n": 1}}
    assert reply.src == "echo"

    with pytest.raises(RequestError) as failed:
        tester.request(ECHO_INBOX, tester.envelope(Group.USER, Op.QUERY, body="raise"), timeout=10)
    assert failed.value.code == 500
    assert "asked to fail" in failed.value.reason
    assert status_of(tester)["counters"]["handler_errors"] == 1  # type: ignore[index]

    # and it carries on
    assert tester.request(ECHO_INBOX, tester.envelope(Group.USER, Op.QUERY, body=2), timeout=10).body == {"echo": 2}


def test_a_thousand_bad_payloads_change_nothing(echo: ManagedProcess, tester: Bus, broker: Broker) -> None:
    rng = random.Random(7)
    valid = Envelope(node="edge-1", src="tester", group=Group.USER, op=Op.QUERY, body=1).to_map()
    payloads: list[bytes] = []
    for i in range(1000):
        match i % 4:
            case 0:
                payloads.append(rng.randbytes(rng.randint(0, 300)))
            case 1:  # a valid envelope with one field broken
                broken = dict(valid, **{rng.choice(["v", "op", "group", "node", "ts", "res"]): rng.choice(
                    [-1, "x/y", 3.5, [], {"a": 1}])})
                payloads.append(msgpack.packb(broken, use_bin_type=True))
            case 2:
                payloads.append(msgpack.packb(rng.choice([[1, 2], "text", 42, None, {"deep": [[[[]]]]}])))
            case _:
                payloads.append(b"\x91" * rng.randint(1, 5000))
    with TestClient(broker.host, broker.port) as raw:
        for payload in payloads:
            raw.publish(ECHO_INBOX, payload)

    def invalid_count() -> int:
        counters = status_of(tester)["counters"]
        assert isinstance(counters, dict)
        return int(counters.get("invalid", 0))

    wait_until(lambda: invalid_count() >= 1000, timeout=60, what="echo to count 1,000 invalid payloads")
    assert invalid_count() == 1000
    assert echo.returncode() is None
    reply = tester.request(ECHO_INBOX, tester.envelope(Group.USER, Op.QUERY, body="still here"), timeout=10)
    assert reply.body == {"echo": "still here"}


def test_invalid_request_gets_an_error_reply(echo: ManagedProcess, tester: Bus, broker: Broker) -> None:
    bad = Envelope(node="edge-1", src="tester", group=Group.USER, op=Op.QUERY).to_map()
    bad["op"] = "explode"
    with TestClient(broker.host, broker.port) as raw:
        raw.subscribe(tester.inbox)
        raw.publish(ECHO_INBOX, msgpack.packb(bad))
        reply = decode(raw.expect().payload)
    assert (reply.op, reply.parent, reply.src) == (Op.ERROR, bad["id"], "echo")
    assert reply.body["code"] == 400
    assert "'op'" in reply.body["reason"]


def next_down(watcher: TestClient, timeout: float) -> dict[str, object]:
    """The next status that is not "up": a component publishes "up" again 10 s after it connects
    (runtime/component.py STATUS_REPEAT_S), which may come first."""
    deadline = time.monotonic() + timeout
    while True:
        body = decode(watcher.expect(timeout=max(0.1, deadline - time.monotonic())).payload).body
        assert isinstance(body, dict)
        if body["state"] != "up":
            return body


def test_sigterm_drains_and_reports_down(echo: ManagedProcess, broker: Broker) -> None:
    with TestClient(broker.host, broker.port) as watcher:
        watcher.subscribe(topics.status("echo"))
        assert decode(watcher.expect().payload).body["state"] == "up"
        echo._proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert echo._proc.wait(timeout=20) == 0  # type: ignore[union-attr]
        assert next_down(watcher, timeout=10)["state"] == "down"
    assert '"msg": "echo stopped"' in echo.log_path.read_text()


def test_kill_9_reports_down_through_the_will(echo: ManagedProcess, broker: Broker) -> None:
    with TestClient(broker.host, broker.port) as watcher:
        watcher.subscribe(topics.status("echo"))
        assert decode(watcher.expect().payload).body["state"] == "up"
        echo.kill()
        down = next_down(watcher, timeout=60)
    assert down == {"state": "down", "pid": down["pid"], "reason": "connection lost"}


def test_a_taker_gets_messages_while_the_handler_thread_is_busy(tester: Bus, broker: Broker) -> None:
    """``take_raw`` runs on the network thread and acknowledges at once: messages on its topics do not wait behind
    a slow handler (EventBus's device requests behind its answers to devices)."""
    taken: list[bytes] = []
    granted = threading.Event()

    def on_granted(topic_filter: str) -> None:
        if topic_filter == "take/+":
            granted.set()

    tester.connection.on_subscribed(on_granted)
    tester.take_raw("take/+", lambda _topic, payload: taken.append(payload))
    release = threading.Event()

    def busy() -> None:
        release.wait(30)  # the handler thread busy until released

    tester.call_soon(busy)
    try:
        assert granted.wait(10)
        with TestClient(broker.host, broker.port) as sender:
            for i in range(300):  # more than the broker lets be unacknowledged at once (100)
                sender.publish(f"take/{i % 3}", str(i).encode(), qos=1)
            wait_until(lambda: len(taken) >= 300, timeout=30, what="every message, the handler thread still busy")
        assert taken == [str(i).encode() for i in range(300)]
        assert not release.is_set()
    finally:
        release.set()
