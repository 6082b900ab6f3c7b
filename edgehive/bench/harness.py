"""What the benchmarks share: their error, work directory, child processes, waits, MQTT watchers and figures.

Every scenario module (link, edge, cloud, twin, stack, footprint, scale) builds on these and on
nothing private of another scenario; a figure measured two ways would not compare.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgehive.errors import EdgehiveError
from edgehive.localcluster import LocalApiServer
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.ports import NoFreePort, PortPicker
from runtime.url import BrokerUrl
from schemas import topics
from schemas.batch import Batch
from schemas.componentstatus import ComponentStatus
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, EnvelopeError, Op, decode
from schemas.fields import BodyError


class BenchError(EdgehiveError, RuntimeError):
    """A benchmark could not run; the message says which part failed and where its logs are."""


def progress_printer(scenario: str, enabled: bool = True) -> Callable[[str], None]:
    """``say(text)``: one progress line on stderr, ``bench SCENARIO [  12.3 s]: text`` (seconds since this
    printer was made), or nothing when not ``enabled``. Every benchmark and ``bench all`` print their phases
    through this one function: stdout is the report's alone (``--json`` keeps it parseable), and a run of many
    minutes says where it is and how long each phase took."""
    began = time.monotonic()

    def say(text: str) -> None:
        if enabled:
            print(f"bench {scenario} [{time.monotonic() - began:6.1f} s]: {text}", file=sys.stderr, flush=True)

    return say


def bench_workdir(stack: ExitStack, prefix: str) -> Path:
    """A fresh directory under /tmp for a benchmark's logs and state, removed when ``stack`` closes unless
    EDGEHIVE_BENCH_KEEP is set (to keep the logs for a look afterwards)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if not os.environ.get("EDGEHIVE_BENCH_KEEP"):
        stack.callback(shutil.rmtree, work, True)
    return work


def bench_apiserver(stack: ExitStack, work: Path, control_plane: bool = False) -> LocalApiServer:
    """A local API server in ``work`` on free ports, its etcd data in /dev/shm (removed when ``stack`` closes):
    not yet prepared or started. ``control_plane``: with the controller-manager and scheduler (LocalApiServer)."""
    local = LocalApiServer(work / "apiserver", port=free_port(), etcd_port=free_port(),
                           etcd_peer_port=free_port(), etcd_data=Path("/dev/shm") / work.name,
                           control_plane=control_plane, controller_manager_port=free_port(),
                           scheduler_port=free_port())
    stack.callback(shutil.rmtree, Path("/dev/shm") / work.name, True)
    return local


BENCH_PORTS = range(10000, 20000)
"""Where the benchmarks' servers listen: below the ephemeral range (runtime/ports.py says why) and the tests' ports
(tests/fixtures/processes.py). With ``bind(0)`` a NATS member once died on start, its MQTT port taken by one of
the hundreds of connections opening around it."""
_BENCH_PORTS = PortPicker(BENCH_PORTS)


def free_port() -> int:
    """A TCP port nothing listens on now, never handed out twice by this process (until the range wraps)."""
    try:
        return _BENCH_PORTS.free_port()
    except NoFreePort as exc:
        raise BenchError(str(exc)) from exc


@contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running with its output in ``log``; terminated (killed after 10 s) when the block ends."""
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


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *,
               progress: Callable[[], str] | None = None, say: Callable[[str], None] | None = None,
               every: float = 5.0, poll: float = 0.05) -> float:
    """Seconds until ``predicate()``; BenchError after ``timeout`` (with the last ``progress()``, which is also
    said every ``every`` seconds while waiting)."""
    start = time.monotonic()
    next_note = start + every
    while not predicate():
        now = time.monotonic()
        if now - start > timeout:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}"
                             + (f" ({progress()})" if progress else ""))
        if progress is not None and say is not None and now >= next_note:
            say(f"  {now - start:5.0f} s: {progress()}")
            next_note = now + every
        time.sleep(poll)
    return time.monotonic() - start


def percentiles(latencies_ns: list[int]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(latencies_ns)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 3)

    return {"p50": pick(0.50), "p99": pick(0.99)}


# -- MQTT: watching what the components say, and the raw broker rate ---------------------------------------------

def connect(url: BrokerUrl, name: str, window: int = 100) -> Connection:
    """A client of the bench's own, not started."""
    return Connection(ConnectionSettings(url=url, client_id=f"bench-{name}", window=window), name=name)


def envelopes_in(payload: bytes) -> list[Envelope]:
    """The envelope a message carries, or a batch's members; none when it does not decode."""
    try:
        envelope = decode(payload)
        return Batch.parse(envelope).members(DEFAULT_MAX_SIZE) if envelope.op == Op.BATCH else [envelope]
    except EnvelopeError:
        return []


def watch_envelopes(url: BrokerUrl, client_id: str, topic_filter: str, on_envelope: Callable[[Envelope, int], None],
                    what: str, *, window: int = 100, clock: Callable[[], int] = time.perf_counter_ns) -> Connection:
    """A connection that hands each envelope on ``topic_filter`` to ``on_envelope`` with the moment it arrived
    (``clock``); the members of a batch (schemas/batch.py) one by one, each at the batch's arrival, since the
    watchers follow objects, not messages; what does not decode is skipped. BenchError names ``what`` when the
    broker cannot be reached."""

    def on_message(incoming: Incoming) -> None:
        now = clock()
        incoming.ack()
        for envelope in envelopes_in(incoming.payload):
            on_envelope(envelope, now)

    connection = Connection(ConnectionSettings(url=url, client_id=client_id, window=window), name=client_id)
    connection.subscribe(topic_filter)
    connection.on_message(on_message)
    connection.start()
    if not connection.wait_connected(20):
        connection.close(drain_timeout=0)
        raise BenchError(f"cannot connect to {url} to watch {what}")
    return connection


# -- resources delivered to a node: MetaManager's commit acknowledgements ----------------------------------------

class CommitAcks:
    """Watches a node's up topic on the cloud broker for MetaManager's commit acknowledgements of ConfigMaps:
    the moment a ConfigMap created in the API server is in the node's store."""

    def __init__(self, url: BrokerUrl, node: str) -> None:
        self.at: dict[str, int] = {}  # configmap name -> when its commit was acknowledged
        self._cond = threading.Condition()
        self.connection = watch_envelopes(url, f"bench-acks-{node}", topics.link_up(node), self._on_envelope,
                                          f"node {node}'s acknowledgements")

    def _on_envelope(self, envelope: Envelope, now: int) -> None:
        if envelope.op == Op.RESPONSE and envelope.res is not None and envelope.res.kind == "configmap":
            with self._cond:
                self.at.setdefault(envelope.res.name, now)
                self._cond.notify_all()

    def wait(self, names: list[str], timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: all(n in self.at for n in names), timeout):
                missing = sum(1 for n in names if n not in self.at)
                raise BenchError(f"{missing} of {len(names)} ConfigMaps not acknowledged by the edge")

    def delivery_rate(self, core: Any, namespace: str, names: list[str], timeout: float) -> float:
        """Creates a ConfigMap per name, one after another: ConfigMaps per second from the first create to the
        last commit acknowledged by the node."""
        start_ns = time.perf_counter_ns()
        for name in names:
            core.create_namespaced_config_map(namespace, configmap_manifest(name))
        self.wait(names, timeout)
        return len(names) / ((max(self.at[n] for n in names) - start_ns) / 1e9)

    def close(self) -> None:
        self.connection.close(drain_timeout=0)


def configmap_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


def consumer_pod(node: str, names: list[str], image: str) -> dict[str, Any]:
    """A pod on ``node`` that uses every ConfigMap in ``names`` (optional, so it runs before they exist): only
    what a pod on the node uses is delivered to it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer"}, "spec": {
        "nodeName": node, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "sleep 3600"], "volumeMounts": [{"name": "all", "mountPath": "/c"}]}],
        "volumes": [{"name": "all", "projected": {"sources": [{"configMap": {"name": n, "optional": True}}
                                                              for n in names]}}]}}


def wait_for_envelope(url: BrokerUrl, topic_filter: str, accept: Callable[[Envelope], bool], timeout: float,
                      what: str) -> None:
    """Until an envelope on ``topic_filter`` is ``accept``-ed (retained ones count); BenchError after ``timeout``."""
    done = threading.Event()

    def on_envelope(envelope: Envelope, _at: int) -> None:
        if accept(envelope):
            done.set()

    watch = watch_envelopes(url, f"bench-watch-{os.urandom(3).hex()}", topic_filter, on_envelope, what)
    try:
        if not done.wait(timeout):
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
    finally:
        watch.close(drain_timeout=0)


def wait_for_payload(url: BrokerUrl, topic: str, payload: bytes, timeout: float, what: str) -> None:
    """Until ``payload`` arrives on ``topic`` as raw bytes (retained ones count); BenchError after ``timeout``."""
    done = threading.Event()

    def on_message(incoming: Incoming) -> None:
        incoming.ack()
        if incoming.payload == payload:
            done.set()

    client_id = f"bench-watch-{os.urandom(3).hex()}"
    connection = Connection(ConnectionSettings(url=url, client_id=client_id), name=client_id)
    connection.subscribe(topic)
    connection.on_message(on_message)
    connection.start()
    try:
        if not connection.wait_connected(20):
            raise BenchError(f"cannot connect to {url} to watch {what}")
        if not done.wait(timeout):
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
    finally:
        connection.close(drain_timeout=0)


def wait_status(url: BrokerUrl, components: tuple[str, ...], timeout: float = 60) -> None:
    """Until every one of ``components`` has said ``up`` in its retained status on the broker at ``url``: a name
    such as ``cloudhub`` is met by any replica of it, ``cloudhub/<replica>`` by that replica."""
    seen: set[str] = set()

    def accept(envelope: Envelope) -> bool:
        with contextlib.suppress(BodyError):
            if (status := ComponentStatus.parse(envelope.body)).up:
                seen.add(envelope.src)  # a status envelope's src is its component (runtime.component)
                if status.replica is not None:
                    seen.add(f"{envelope.src}/{status.replica}")
        return seen >= set(components)

    wait_for_envelope(url, topics.all_status(), accept, timeout, f"{', '.join(components)} to report up")


def wait_link(url: BrokerUrl, node: str, up: bool, timeout: float = 30, native: bool = False) -> None:
    """Until the bridge of ``node`` says, on the edge broker at ``url``, that its link is up (or down): the bridge
    process in an envelope on the link-state topic, mosquitto's own bridge (``native``) as a raw ``1``/``0`` on the
    node's hello topic."""
    what = f"the bridge to report the link {'up' if up else 'down'}"
    if native:
        wait_for_payload(url, topics.link_hello(node), topics.NATIVE_UP if up else topics.NATIVE_DOWN, timeout, what)
        return
    wait_for_envelope(url, topics.link_state(node), lambda e: (e.op == Op.CONNECTED) == up, timeout, what)


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


@dataclass(frozen=True)
class Route:
    """A path for QoS 1 messages: published to one broker, received from another (or the same)."""

    label: str
    publish_to: BrokerUrl
    receive_from: BrokerUrl
    topic: str


def run_path(route: Route, count: int, rate: float | None) -> tuple[float, list[int]]:
    """Send ``count`` messages (flat out, or paced at ``rate``/s); return (msgs/s, latencies in ns)."""
    label, topic = route.label, route.topic
    receiver = _Receiver(count)
    sub = connect(route.receive_from, f"{label}-sub")
    sub.subscribe(topic)
    sub.on_message(receiver)
    pub = connect(route.publish_to, f"{label}-pub")
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
