"""``edgehive bench link``: what the bridge costs, against a baseline measured in the same run.

The baseline is two clients on one broker (publisher -> cloud broker -> subscriber).
The bridged path is publisher -> cloud broker -> bridge -> edge broker -> subscriber.
Throughput is measured flat out with QoS 1 and a bounded window; latency at a fixed
1,000 msg/s on both paths, so the difference is what the bridge adds. This machine
is noisy, so only ratios and differences from one run mean anything.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from broker.embedded import BrokerSettings
from broker.launch import broker_argv, wait_ready
from broker.passwords import set_password
from edgehive.localcluster import LocalApiServer
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, EnvelopeError, decode

NODE = "bench-node"
CLOUD_USER, CLOUD_PASSWORD = "cloud", "bench-cloud"
NODE_PASSWORD = "bench-node-pw"


class BenchError(RuntimeError):
    """A benchmark could not run; the message says which part failed and where its logs are."""


@dataclass
class LinkReport:
    broker: str
    messages: int
    baseline_msgs_per_s: float
    bridge_msgs_per_s: float
    ratio: float
    rate_for_latency: int
    baseline_latency_ms: dict[str, float]
    bridge_latency_ms: dict[str, float]
    added_latency_ms: dict[str, float]


def bench_workdir(stack: ExitStack, prefix: str) -> Path:
    """A fresh directory under /tmp for a benchmark's logs and state, removed when ``stack`` closes unless
    EDGEHIVE_BENCH_KEEP is set (to keep the logs for a look afterwards)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if not os.environ.get("EDGEHIVE_BENCH_KEEP"):
        stack.callback(shutil.rmtree, work, True)
    return work


def bench_apiserver(stack: ExitStack, work: Path) -> LocalApiServer:
    """A local API server in ``work`` on free ports, its etcd data in /dev/shm (removed when ``stack`` closes):
    not yet prepared or started."""
    local = LocalApiServer(work / "apiserver", port=_free_port(), etcd_port=_free_port(),
                           etcd_peer_port=_free_port(), etcd_data=Path("/dev/shm") / work.name)
    stack.callback(shutil.rmtree, Path("/dev/shm") / work.name, True)
    return local


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Receiver:
    """Counts arrivals and records one-way latency from the timestamp in each payload."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.latencies_ns: list[int] = []
        self.done = threading.Event()
        self.last_ns = 0

    def __call__(self, message: Incoming) -> None:
        now = time.perf_counter_ns()
        sent = struct.unpack(">q", message.payload[:8])[0]
        self.latencies_ns.append(now - sent)
        self.count += 1
        self.last_ns = now
        message.ack()
        if self.count >= self.expected:
            self.done.set()


def watch_envelopes(url: BrokerUrl, client_id: str, topic_filter: str, on_envelope: Callable[[Envelope, int], None],
                    what: str, *, window: int = 100, clock: Callable[[], int] = time.perf_counter_ns) -> Connection:
    """A connection that hands each envelope on ``topic_filter`` to ``on_envelope`` with the moment it arrived
    (``clock``); what does not decode is skipped. BenchError names ``what`` when the broker cannot be reached."""

    def on_message(incoming: Incoming) -> None:
        now = clock()
        incoming.ack()
        try:
            envelope = decode(incoming.payload)
        except EnvelopeError:
            return
        on_envelope(envelope, now)

    connection = Connection(ConnectionSettings(url=url, client_id=client_id, window=window), name=client_id)
    connection.subscribe(topic_filter)
    connection.on_message(on_message)
    connection.start()
    if not connection.wait_connected(20):
        connection.close(drain_timeout=0)
        raise BenchError(f"cannot connect to {url} to watch {what}")
    return connection


def _connect(url: BrokerUrl, name: str, window: int = 100) -> Connection:
    return Connection(ConnectionSettings(url=url, client_id=f"bench-{name}", window=window), name=name)


@dataclass(frozen=True)
class _Route:
    label: str
    publish_to: BrokerUrl
    receive_from: BrokerUrl
    topic: str


def _run_path(route: _Route, count: int, rate: float | None) -> tuple[float, list[int]]:
    """Send ``count`` messages (flat out, or paced at ``rate``/s); return (msgs/s, latencies in ns)."""
    label, topic = route.label, route.topic
    receiver = _Receiver(count)
    sub = _connect(route.receive_from, f"{label}-sub")
    sub.subscribe(topic)
    sub.on_message(receiver)
    pub = _connect(route.publish_to, f"{label}-pub")
    sub.start()
    pub.start()
    try:
        if not (sub.wait_connected(15) and pub.wait_connected(15)):
            raise BenchError(f"bench: could not connect to the brokers for {label}")
        padding = b"x" * 200
        start = time.perf_counter_ns()
        for i in range(count):
            if rate is not None:
                due = start + int(i * 1e9 / rate)
                while (now := time.perf_counter_ns()) < due:
                    time.sleep(min(0.001, (due - now) / 1e9))
            pub.publish(topic, struct.pack(">q", time.perf_counter_ns()) + padding)
        if not receiver.done.wait(120):
            raise BenchError(f"bench: {label} received {receiver.count} of {count} messages in 120 s")
        elapsed = (receiver.last_ns - start) / 1e9
        return count / elapsed, receiver.latencies_ns
    finally:
        pub.close(drain_timeout=1)
        sub.close(drain_timeout=1)


def _percentiles(latencies_ns: list[int]) -> dict[str, float]:
    ordered = sorted(latencies_ns)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 3)

    return {"p50": pick(0.50), "p99": pick(0.99)}


def bench_link(kind: str, messages: int, rate: int, progress: bool = True) -> LinkReport:
    def say(text: str) -> None:
        if progress:
            print(f"bench link [{kind}]: {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="edgehive-bench-") as tmp:
        work = Path(tmp)
        passwd = work / "passwd"
        set_password(passwd, CLOUD_USER, CLOUD_PASSWORD)
        set_password(passwd, NODE, NODE_PASSWORD)
        cloud_port, edge_port = _free_port(), _free_port()
        cloud_settings = BrokerSettings(listen=(f"127.0.0.1:{cloud_port}",), password_file=str(passwd))
        edge_settings = BrokerSettings(listen=(f"127.0.0.1:{edge_port}",))
        (work / "cloud").mkdir()
        (work / "edge").mkdir()
        cloud_admin = BrokerUrl("127.0.0.1", cloud_port, username=CLOUD_USER, password=CLOUD_PASSWORD)
        edge_url = BrokerUrl("127.0.0.1", edge_port)
        say("starting the cloud broker, the edge broker and the bridge")
        with (
            _process(broker_argv(kind, cloud_settings, work / "cloud"), work / "cloud.log"),
            _process(broker_argv(kind, edge_settings, work / "edge"), work / "edge.log"),
        ):
            if not (wait_ready(cloud_admin, 20) and wait_ready(edge_url, 20)):
                raise BenchError(f"bench: the {kind} brokers did not start; see {work}/*.log")
            bridge_argv = [sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", str(edge_url),
                           "--cloud", f"mqtt://{NODE}:{NODE_PASSWORD}@127.0.0.1:{cloud_port}"]
            with _process(bridge_argv, work / "bridge.log"):
                _wait_link_up(edge_url)
                baseline = _Route("baseline", cloud_admin, cloud_admin, "bench/baseline")
                bridged = _Route("bridged", cloud_admin, edge_url, topics.link_down(NODE))
                say(f"baseline: {messages} QoS 1 messages through one broker")
                baseline_rate, _ = _run_path(baseline, messages, None)
                say(f"bridged: {messages} QoS 1 messages cloud broker -> bridge -> edge broker")
                bridge_rate, _ = _run_path(bridged, messages, None)
                latency_count = rate * 3
                say(f"latency at {rate} msg/s, {latency_count} messages on each path")
                _, base_lat = _run_path(baseline, latency_count, rate)
                _, bridge_lat = _run_path(bridged, latency_count, rate)
    base_p, bridge_p = _percentiles(base_lat), _percentiles(bridge_lat)
    return LinkReport(
        broker=kind, messages=messages,
        baseline_msgs_per_s=round(baseline_rate, 1), bridge_msgs_per_s=round(bridge_rate, 1),
        ratio=round(bridge_rate / baseline_rate, 3), rate_for_latency=rate,
        baseline_latency_ms=base_p, bridge_latency_ms=bridge_p,
        added_latency_ms={k: round(bridge_p[k] - base_p[k], 3) for k in base_p},
    )


def _wait_link_up(edge_url: BrokerUrl) -> None:
    state = threading.Event()

    def on_state(message: Incoming) -> None:
        message.ack()
        if b"up" in message.payload:
            state.set()

    watch = _connect(edge_url, "link-watch")
    watch.subscribe(topics.link_state(NODE))
    watch.on_message(on_state)
    watch.start()
    try:
        if not state.wait(30):
            raise BenchError("bench: the bridge did not report the link up within 30 s")
    finally:
        watch.close(drain_timeout=0)


def print_report(report: LinkReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "broker": report.broker,
            "baseline_msgs_per_s": report.baseline_msgs_per_s,
            "bridge_msgs_per_s": report.bridge_msgs_per_s,
            "ratio": report.ratio,
            "added_latency_ms": report.added_latency_ms,
            "details": asdict(report),
        }))
        return
    print(f"link benchmark, {report.broker} brokers, {report.messages} QoS 1 messages per throughput run")
    print(f"  baseline (one broker)      {report.baseline_msgs_per_s:>10.0f} msg/s")
    print(f"  through the bridge         {report.bridge_msgs_per_s:>10.0f} msg/s   ratio {report.ratio:.2f} "
          f"(goal >= 0.8)")
    print(f"  latency at {report.rate_for_latency} msg/s     baseline p50 {report.baseline_latency_ms['p50']:.2f} ms "
          f"p99 {report.baseline_latency_ms['p99']:.2f} ms; bridged p50 {report.bridge_latency_ms['p50']:.2f} ms "
          f"p99 {report.bridge_latency_ms['p99']:.2f} ms")
    print(f"  added by the bridge        p50 {report.added_latency_ms['p50']:.2f} ms, "
          f"p99 {report.added_latency_ms['p99']:.2f} ms (goal p99 <= 5 ms)")
