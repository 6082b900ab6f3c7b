"""The rig for fuzzing real processes (tests/resilience/test_fuzz.py): component processes on one real broker,
a prober that asks each for its counters, a publisher, a watcher, and the checks made after every example.

A Case is one payload, the topic it goes to and what must come of it: which component counts it as a
rejection, and the answer its sender is owed. Rig.fuzz runs a hypothesis strategy of Cases, checking each
before the next, so the failing example is the one reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import reprlib
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runtime.bus import Bus, BusSettings, RequestError
from runtime.connection import ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import DEFAULT_MAX_SIZE, FIELDS, Envelope, EnvelopeError, Group, Op, decode
from tests.fixtures.brokers import Broker
from tests.fixtures.mqtt import MqttError, Received, TestClient
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.fuzz_payloads import NODE

EXAMPLES = int(os.environ.get("EDGEHIVE_FUZZ_EXAMPLES", "200"))
REJECTIONS = ("invalid", "refused", "wrong_node", "bad_device_topic", "bad_link_topic")
UNEXPECTED = ("handler_errors", "batch_errors")
"""An exception the component did not see coming: bad input must be refused before it gets that far."""
WAIT_S = 10.0
FUZZER = "fuzzer"
TOPIC_CLASSES = {"link", "from-cloud", "to-cloud", "from-edge", "cloud-link", "session", "status", "inbox", "device",
                 "membership", "other"}


@dataclass(frozen=True)
class Case:
    """One payload, where it goes, and what must come of it."""

    topic: str
    payload: bytes
    expect: dict[str, int] = field(default_factory=dict)
    """Component -> how many rejections it must count for this payload."""
    answer: Callable[[Received], bool] | None = None
    """A message the sender is owed (on a topic the watcher follows), or None."""
    request: Envelope | None = None
    """Sent with a request from the prober instead: the reply must be an error with ``code``."""
    code: int = 0

    def __repr__(self) -> str:  # what a failure shows: the payload, bounded (some are a MiB)
        payload = self.payload if len(self.payload) <= 300 else self.payload[:300] + b"...(%d bytes)" % len(
            self.payload)
        sent = f"request={reprlib.repr(self.request)}" if self.request is not None else f"payload={payload!r}"
        return f"Case(topic={self.topic!r}, {sent}, expect={self.expect}, code={self.code})"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        """What hypothesis prints for a failing example (it would print every field in full otherwise)."""
        printer.text(repr(self))


def envelope_bytes(envelope: Envelope) -> bytes:
    return envelope.encode(max_size=2 * DEFAULT_MAX_SIZE)


def reply_to(msg_id: str, code: int | None) -> Callable[[Received], bool]:
    """An envelope answering ``msg_id``: an error with ``code``, or (None) a response."""
    def match(message: Received) -> bool:
        try:
            envelope = decode(message.payload)
        except EnvelopeError:
            return False
        if envelope.parent != msg_id:
            return False
        if code is None:
            assert envelope.op == Op.RESPONSE, envelope
        else:
            assert envelope.op == Op.ERROR, envelope
            assert isinstance(envelope.body, dict)
            assert envelope.body.get("code") == code, envelope
        return True
    return match


def on_topic(topic: str, match: Callable[[Received], bool]) -> Callable[[Received], bool]:
    return lambda message: message.topic == topic and match(message)


def device_error(topic: str, codes: tuple[int, ...]) -> Callable[[Received], bool]:
    """KubeEdge's error JSON on a result topic."""
    def match(message: Received) -> bool:
        if message.topic != topic:
            return False
        answer = json.loads(message.payload)
        assert answer.get("code") in codes, answer
        assert isinstance(answer.get("reason"), str)
        return True
    return match


# -- the processes ----------------------------------------------------------------------------------------


@dataclass
class Rig:
    """Real component processes on one real broker, a prober (a Bus asking them for their counters), a
    publisher and a watcher."""

    broker: Broker
    side: topics.Side
    workdir: Path
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    stores: dict[str, Path] = field(default_factory=dict)
    publisher: TestClient = field(init=False)
    watcher: TestClient = field(init=False)
    prober: Bus = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = TestClient(self.broker.host, self.broker.port, timeout=30).connect()
        self.watcher = TestClient(self.broker.host, self.broker.port, timeout=30).connect()
        url = BrokerUrl.parse(self.broker.url())
        self.prober = Bus(BusSettings(ConnectionSettings(url=url, client_id=f"fuzz-prober-{self.side.value}"),
                                      module=FUZZER, side=self.side, node=NODE)).start()
        assert self.prober.connection.wait_connected(15)

    def start(self, components: dict[str, list[str]]) -> None:
        """Start them all, then wait for each one's retained ``up`` status with its own pid."""
        with TestClient(self.broker.host, self.broker.port) as status:
            for name, argv in components.items():
                self.processes[name] = ManagedProcess(name, argv, self.workdir / f"{name}.log").start()
                status.subscribe(topics.status(name))
            up: set[str] = set()
            deadline = time.monotonic() + 60
            while up != set(components):
                self.assert_alive()
                assert time.monotonic() < deadline, f"not up within 60 s: {set(components) - up}"
                with contextlib.suppress(MqttError):
                    envelope = decode(status.expect(timeout=0.5).payload)
                    process = self.processes.get(envelope.src)
                    body = envelope.body if isinstance(envelope.body, dict) else {}
                    if process is not None and body.get("state") == "up" and body.get("pid") == process.pid:
                        up.add(envelope.src)

    # -- what the components say about themselves -------------------------------------------------------

    def counters(self, component: str) -> dict[str, int]:
        query = self.prober.envelope(Group.HUB, Op.QUERY)
        reply = self.prober.request(topics.inbox(self.side, component), query, timeout=WAIT_S)
        assert isinstance(reply.body, dict)
        counters = reply.body["counters"]
        assert isinstance(counters, dict)
        return counters

    def report(self, component: str) -> dict[str, Any]:
        reply = self.prober.request(topics.inbox(self.side, component), self.prober.envelope(Group.HUB, Op.QUERY),
                                    timeout=WAIT_S)
        assert isinstance(reply.body, dict)
        return reply.body

    def rejections(self, component: str) -> int:
        counters = self.counters(component)
        return sum(counters.get(name, 0) for name in REJECTIONS)

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.returncode() is None, f"{name} died (status {process.returncode()}):\n" \
                                                 f"{process.log_tail(60)}"

    def dump(self) -> dict[str, str]:
        """Every store's rows; each must open and pass its integrity check."""
        out = {}
        for name, path in self.stores.items():
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"{name}: {path} is damaged"
                out[name] = "\n".join(db.iterdump())
        return out

    # -- one example ----------------------------------------------------------------------------------------

    def check(self, case: Case) -> None:
        before = {component: self.rejections(component) for component in case.expect}
        if case.request is not None:
            with pytest.raises(RequestError) as refused:
                self.prober.request(case.topic, case.request, timeout=WAIT_S)
            assert refused.value.code == case.code, refused.value
        else:
            self.publisher.publish(case.topic, case.payload)
        if case.answer is not None:
            self.await_message(case.answer, f"the answer to {case!r}")
        for component, n in case.expect.items():
            target = before[component] + n

            def counted(c: str = component, target: int = target) -> bool:
                return self.rejections(c) >= target

            wait_until(counted, timeout=WAIT_S, interval=0.005, what=f"{component} to count {n} rejection(s) of "
                       f"{case!r}", alive=self.processes[component])
            assert self.rejections(component) == target, f"{component} counted {case!r} more than {n} time(s)"
        self.assert_alive()

    def await_message(self, match: Callable[[Received], bool], what: str) -> Received:
        deadline_left = WAIT_S
        while True:
            try:
                message = self.watcher.expect(timeout=deadline_left)
            except MqttError:
                self.assert_alive()
                pytest.fail(f"no answer within {WAIT_S:.0f} s: {what}", pytrace=False)
            if match(message):
                return message

    def fuzz(self, strategy: st.SearchStrategy[Case], examples: int = EXAMPLES) -> Counter[str]:
        """Run ``examples`` cases; returns how many rejections each component was expected to count."""
        expected: Counter[str] = Counter()

        # No shrinking: each example is checked on its own before the next, so the failing one is the one
        # reported, and a shrink pass over a dead process would only blame innocent payloads.
        @settings(max_examples=examples, deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(case: Case) -> None:
            self.check(case)
            expected.update(case.expect)

        one()
        return expected

    def close(self) -> None:
        """SIGTERM everything started here: each must exit 0, and no process may be left behind."""
        with contextlib.suppress(Exception):
            self.prober.close(drain_timeout=2)
        self.publisher.close()
        self.watcher.close()
        for process in self.processes.values():
            process.stop()
        self.broker.stop()
        # Anything still running that names this rig's broker (its port, or its configuration's directory):
        left = processes_mentioning(f"127.0.0.1:{self.broker.port}") + processes_mentioning(str(self.broker.workdir))
        assert not left, f"processes left behind: {left}"
        for name, process in self.processes.items():
            assert process.returncode() == 0, f"{name} exited with {process.returncode()}:\n{process.log_tail(40)}"


def processes_mentioning(marker: str) -> list[str]:
    """The command lines of running processes that contain ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if marker in cmdline:
                    found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def assert_counters_sane(rig: Rig, totals: dict[str, dict[str, int]], expected: Counter[str]) -> None:
    """Each component counted exactly what it was sent, hit no unexpected exception, and its counter names
    stayed a bounded set (none made of what a sender wrote)."""
    for component in rig.processes:
        counters = rig.counters(component)
        before = totals[component]
        counted = sum(counters.get(n, 0) - before.get(n, 0) for n in REJECTIONS)
        assert counted == expected[component], f"{component} counted {counted} rejections, not {expected[component]}"
        for name in UNEXPECTED:
            assert counters.get(name, 0) == before.get(name, 0), f"{component}: {name} {counters}\n" \
                                                                 f"{rig.processes[component].log_tail(60)}"
        for name in counters:
            if name.startswith("invalid_"):
                assert name[len("invalid_"):] in {*FIELDS, "payload", "unknown_field"}, name
            elif ":" in name:
                assert name.split(":", 1)[1] in TOPIC_CLASSES, name
            else:
                assert name.replace("_", "").isalpha(), name
                assert len(name) < 40, name
