"""``edgehive bench edge``: what an edge node costs, against a baseline measured in the same run.

- commits: 1,000 ConfigMaps sent down the link, each acknowledged by MetaManager
  after its SQLite commit; the baseline is the same publishes answered by a bare
  echo client at the same place (the edge broker), through the same brokers and
  bridge, so the difference is EdgeHub + MetaManager + the commit. The bench's
  cloud sends as CloudHub does with its defaults: at most ``window_per_node``
  objects unacknowledged, what is due at once packed into batches to a node
  (or an echo) that said in its hello it takes them, a pass at most every
  ``batch_linger_ms``.
- pod start: the time from a pod's envelope to its Running status arriving back
  at the cloud, over 20 pods one after another.
- offline restore: 10 pods running, the link cut, every edge process stopped and
  every container removed (a reboot); the time from starting the edge processes
  again until all 10 run.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.cloudhub.hub import CloudHubSettings
from edgehive.bench.harness import (
    BenchError,
    bench_workdir,
    envelopes_in,
    percentiles,
    progress_printer,
    wait_link,
    wait_status,
    wait_until,
    watch_envelopes,
)
from edgehive.bench.system import IMAGE, NODE, EdgeProcesses, Podman, require_podman, start_brokers, start_podman
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.linger import Linger
from runtime.url import BrokerUrl
from schemas import topics
from schemas.batch import MIN_BYTES, Packed, pack
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op
from schemas.fields import BodyError
from schemas.link import Keepalive, KeepaliveAnswer
from schemas.resource import ResourceKey

_CLOUDHUB = CloudHubSettings()
"""The bench sends as a CloudHub left on its defaults does."""
WINDOW = _CLOUDHUB.window_per_node
"""Objects in flight to the node, unacknowledged."""
BATCH_MEMBERS = _CLOUDHUB.batch_max_members
BATCH_BYTES = _CLOUDHUB.batch_max_bytes
LINGER_S = _CLOUDHUB.batch_linger_ms / 1000


@dataclass
class EdgeReport:
    broker: str
    objects: int
    commit_per_s: float
    baseline_per_s: float
    ratio: float
    ack_latency_ms: dict[str, float]
    baseline_latency_ms: dict[str, float]
    pod_start_s: dict[str, float]
    offline_restore_s: float


def cloudhub_up_batch_bytes() -> int | None:
    """What a CloudHub of the default configuration answers a node's keepalive with: the largest batch it takes
    up the link (cloud/cloudhub/routing.py's ``up_batch_bytes``), or None when its defaults turn batches off."""
    settings = CloudHubSettings()
    largest = min(settings.batch_max_bytes, settings.max_envelope_size)
    return None if settings.batch_max_members < 2 or largest < MIN_BYTES else largest


def keepalive_answer(envelope: Envelope, up_batch_bytes: int | None) -> Envelope | None:
    """CloudHub's answer to a node's hello or keepalive ``envelope``: only to a node that says it takes batches (a
    node of the previous version, or one with ``link_batches`` off, hears nothing and sends one envelope per
    message); a keepalive that does not parse gets none here (CloudHub refuses it; the bench only needs it
    unanswered)."""
    try:
        keepalive = Keepalive.parse(envelope.body)
    except BodyError:
        return None
    if keepalive.batch_bytes is None:
        return None
    return envelope.reply("cloudhub", KeepaliveAnswer(up_batch_bytes).as_body())


class _Cloud:
    """The bench's cloud end: sends on the down topic as CloudHub does (a window of objects in flight, what is
    due packed into batches for a peer that takes them), collects replies and pod statuses. It answers the node's
    hello and keepalives as CloudHub does (KeepaliveAnswer, to a node that says it takes batches), so EdgeHub
    sends its outbox up in batches exactly as it would to a real cloud; the members of a batch are acknowledged
    one by one, as the controllers answer each entry CloudHub routes to them."""

    def __init__(self, url: BrokerUrl) -> None:
        self.up_batch_bytes = cloudhub_up_batch_bytes()
        self.replies: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.batch_bytes: int | None = None  # what the node's last hello or keepalive said it takes
        self._in_flight: set[str] = set()
        self._cond = threading.Condition()
        self.connection = watch_envelopes(url, "bench-cloud", topics.link_up(NODE), self._on_envelope,
                                          "the node's link", window=200)

    def _on_envelope(self, envelope: Envelope, now: int) -> None:
        with self._cond:
            if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent:
                self.replies[envelope.parent] = now
                self._in_flight.discard(envelope.parent)
            elif envelope.op == Op.KEEPALIVE:
                try:
                    self.batch_bytes = Keepalive.parse(envelope.body).batch_bytes
                except BodyError:
                    self.batch_bytes = None
            elif envelope.res is not None and envelope.res.kind == "podstatus":
                status = (envelope.body or {}).get("status") or {}
                containers = status.get("containerStatuses") or []
                if status.get("phase") == "Running" and containers and all(
                        "running" in c.get("state", {}) for c in containers):
                    self.running.setdefault(envelope.res.name, now)
            self._cond.notify_all()
        if envelope.op == Op.KEEPALIVE:
            answer = keepalive_answer(envelope, self.up_batch_bytes)
            if answer is not None:
                self._publish(answer)
        elif envelope.op not in (Op.RESPONSE, Op.ERROR, Op.QUERY):
            self._publish(envelope.reply("cloudhub", {"ok": True}))

    def _publish(self, envelope: Envelope) -> None:
        """Off the connection's receiving thread, which must not wait on its own publishes."""
        threading.Thread(target=self.connection.publish, args=(topics.link_down(NODE), envelope.encode()),
                         daemon=True).start()

    def send(self, envelope: Envelope) -> int:
        sent = time.perf_counter_ns()
        self.connection.publish(topics.link_down(NODE), envelope.encode(), timeout=30)
        return sent

    def send_all(self, envelopes: list[Envelope], rate: float | None = None) -> dict[str, int]:
        """Send ``envelopes`` (at ``rate`` per second, or as fast as the window lets them go) and return when each
        left. Like CloudHub's sender, a pass packs what is due and fits the window, and a pass follows the last one
        by at least CloudHub's ``batch_linger_ms`` (pacing, as CloudHub's sender waits on its stop event)."""
        sent: dict[str, int] = {}
        start = time.perf_counter_ns()
        linger = Linger(LINGER_S)
        i = 0
        while i < len(envelopes):
            hold = linger.hold(time.perf_counter())
            if hold > 0:
                time.sleep(hold)
            due_count = len(envelopes) - i
            if rate is not None:
                due_count = min(due_count, int((time.perf_counter_ns() - start) * rate / 1e9) + 1 - i)
                if due_count <= 0:
                    time.sleep(min(0.001, max(0.0, (start + i * 1e9 / rate - time.perf_counter_ns()) / 1e9)))
                    continue
            with self._cond:
                if not self._cond.wait_for(lambda: len(self._in_flight) < WINDOW, 120):
                    raise BenchError(f"bench edge: {len(self._in_flight)} objects unacknowledged for 120 s")
                room = WINDOW - len(self._in_flight)
                batch_bytes = self.batch_bytes
                due = envelopes[i:i + min(due_count, room)]
                self._in_flight.update(e.id for e in due)
            now = time.perf_counter_ns()
            linger.sent(time.perf_counter())
            for packed in self._packed(due, batch_bytes):
                self.connection.publish(topics.link_down(NODE), packed.payload, timeout=30)
            sent.update((e.id, now) for e in due)
            i += len(due)
        return sent

    @staticmethod
    def _packed(due: list[Envelope], batch_bytes: int | None) -> list[Packed]:
        if batch_bytes is None:
            return [Packed(e, e.encode(), (e,)) for e in due]
        return pack(NODE, "cloudhub", due, max_members=BATCH_MEMBERS, max_bytes=min(BATCH_BYTES, batch_bytes))

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise BenchError(f"bench edge: timed out after {timeout:.0f} s waiting for {what}")

    def close(self) -> None:
        self.connection.close(drain_timeout=1)


class _Echo:
    """The baseline: answers every downstream envelope at once, from the edge broker; a batch's members with one
    batch, as MetaManager does, after a hello that says it takes batches as large as EdgeHub's default."""

    def __init__(self, url: BrokerUrl) -> None:
        self.connection = Connection(ConnectionSettings(url=url, client_id="bench-echo", window=200),
                                     name="bench-echo")
        self.connection.subscribe(topics.link_down(NODE))
        self._queue: list[bytes] = []
        self._cond = threading.Condition()
        self._stop = False
        self.connection.on_message(self._on_message)
        self._thread = threading.Thread(target=self._reply_loop, daemon=True)
        self._thread.start()
        self.connection.start()
        if not self.connection.wait_connected(20):
            raise BenchError("the echo client could not connect to the edge broker")
        hello = Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                         body=Keepalive(batch_bytes=DEFAULT_MAX_SIZE).as_body())
        self.connection.publish(topics.link_up(NODE), hello.encode(), timeout=30)

    def _on_message(self, incoming: Incoming) -> None:
        incoming.ack()
        replies = [e.reply("echo", {"outcome": "applied"}) for e in envelopes_in(incoming.payload)]
        if not replies:
            return
        packed = pack(NODE, "echo", replies, max_members=len(replies), max_bytes=DEFAULT_MAX_SIZE)
        with self._cond:
            self._queue.extend(p.payload for p in packed)
            self._cond.notify()

    def _reply_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop)
                if self._stop:
                    return
                batch, self._queue = self._queue, []
            for payload in batch:
                self.connection.publish(topics.link_up(NODE), payload)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.connection.close(drain_timeout=1)


def _configmaps(count: int, tag: str) -> list[Envelope]:
    out = []
    for i in range(count):
        name = f"{tag}-{i}"
        body = {"metadata": {"name": name, "namespace": "bench", "uid": f"{tag}-{i}"}, "data": {"i": str(i)}}
        out.append(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                            res=ResourceKey("bench", "configmap", name), rv=str(i + 1), body=body))
    return out


LATENCY_RATE = 100
"""Messages per second for the latency runs: well below capacity, so latency is not queueing."""


def _measure(cloud: _Cloud, envelopes: list[Envelope], rate: float | None = None) -> tuple[float, list[int]]:
    start = time.perf_counter_ns()
    sent = cloud.send_all(envelopes, rate)
    cloud.wait(lambda: all(e.id in cloud.replies for e in envelopes), 120, f"{len(envelopes)} acknowledgements")
    last = max(cloud.replies[e.id] for e in envelopes)
    return len(envelopes) / ((last - start) / 1e9), [cloud.replies[e.id] - sent[e.id] for e in envelopes]


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", "sleep 3600"]}]}}


def _pod_envelope(name: str) -> Envelope:
    return Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                    res=ResourceKey("bench", "pod", name), rv="1", body=_pod(name))


def bench_edge(objects: int = 1000, pods: int = 20, restore_pods: int = 10, progress: bool = True,
               broker: str = "amqtt") -> EdgeReport:
    say = progress_printer("edge", progress)
    require_podman()
    with ExitStack() as stack:
        work = bench_workdir(stack, "ehbe-")
        say(f"working in {work}")
        say("starting brokers, bridge and a private podman service")
        # The bridge process on both broker kinds (not mosquitto's own, a node's default there): the offline
        # restore cuts the link by stopping it, and the commits are EdgeHub's and MetaManager's either way.
        brokers = start_brokers(stack, work, broker)
        podman = start_podman(stack, work)
        bridge = stack.enter_context(_Restartable(brokers.bridge_argv(), work / "bridge.log"))
        cloud = _Cloud(brokers.cloud)
        stack.callback(cloud.close)
        wait_link(brokers.edge, NODE, up=True)

        say(f"baseline: {objects} ConfigMaps answered by an echo client on the edge broker")
        echo = _Echo(brokers.edge)
        baseline_rate, _ = _measure(cloud, _configmaps(objects, "echo"))
        _, baseline_lat = _measure(cloud, _configmaps(2 * LATENCY_RATE, "echo-lat"), LATENCY_RATE)
        echo.close()

        edge = EdgeProcesses(work, brokers.edge, podman.url)
        stack.callback(edge.stop)
        edge.start()
        wait_status(brokers.edge, ("edgehub", "metamanager", "edged"))
        say(f"commits: {objects} ConfigMaps through EdgeHub and MetaManager")
        commit_rate, _ = _measure(cloud, _configmaps(objects, "cm"))
        say(f"latency: {2 * LATENCY_RATE} ConfigMaps at {LATENCY_RATE}/s, each path")
        _, commit_lat = _measure(cloud, _configmaps(2 * LATENCY_RATE, "cm-lat"), LATENCY_RATE)

        say(f"pod start: {pods} pods, one after another")
        starts = _pod_starts(cloud, podman, pods)
        say(f"offline restore: {restore_pods} pods, link cut, edge processes stopped, containers removed")
        restore = _offline_restore(cloud, podman, bridge, edge, brokers.edge, restore_pods)
    start_p = {k: round(v / 1000, 3) for k, v in percentiles([int(s * 1e9) for s in starts]).items()}
    return EdgeReport(
        broker=broker, objects=objects, commit_per_s=round(commit_rate, 1), baseline_per_s=round(baseline_rate, 1),
        ratio=round(commit_rate / baseline_rate, 3), ack_latency_ms=percentiles(commit_lat),
        baseline_latency_ms=percentiles(baseline_lat), pod_start_s=start_p, offline_restore_s=round(restore, 2),
    )


def _pod_starts(cloud: _Cloud, podman: Podman, pods: int) -> list[float]:
    """Seconds from each pod's envelope to its Running status, one pod after another; then the pods deleted."""
    starts = []
    started: list[Envelope] = []
    for i in range(pods):
        name = f"start-{i}"
        envelope = _pod_envelope(name)
        sent = cloud.send(envelope)
        started.append(envelope)
        cloud.wait(lambda n=name: n in cloud.running, 60, f"pod {name} Running")
        starts.append((cloud.running[name] - sent) / 1e9)
    for envelope in started:
        cloud.send(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.DELETE, res=envelope.res,
                            body={"metadata": envelope.body["metadata"]}))
    wait_until(lambda: podman.running_containers() == 0, 120, "the deleted pods to stop", poll=0.1)
    return starts


def _offline_restore(cloud: _Cloud, podman: Podman, bridge: _Restartable, edge: EdgeProcesses, edge_url: BrokerUrl,
                     count: int) -> float:
    """Seconds from starting the edge processes again, after a reboot without the link, until all pods run."""
    names = [f"restore-{i}" for i in range(count)]
    for name in names:
        cloud.send(_pod_envelope(name))
    cloud.wait(lambda: all(n in cloud.running for n in names), 120, "the restore pods Running")
    bridge.stop()
    wait_link(edge_url, NODE, up=False)
    edge.stop()
    podman.remove_pods(check=True)
    t0 = time.monotonic()
    edge.start()
    wait_until(lambda: podman.running_containers() >= count, 120, "the pods to be restored")
    return time.monotonic() - t0


class _Restartable:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Restartable:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def print_report(report: EdgeReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "broker": report.broker, "commit_per_s": report.commit_per_s, "baseline_per_s": report.baseline_per_s,
            "ratio": report.ratio,
            "ack_latency_ms": report.ack_latency_ms, "pod_start_s": report.pod_start_s,
            "offline_restore_s": report.offline_restore_s, "baseline_latency_ms": report.baseline_latency_ms,
        }))
        return
    print(f"edge benchmark, {report.objects} ConfigMaps, {report.broker} brokers")
    print(f"  acknowledged commits          {report.commit_per_s:>8.0f} obj/s (goal >= 500); baseline echo "
          f"{report.baseline_per_s:.0f}/s, ratio {report.ratio:.2f}")
    print(f"  publish -> ack at {LATENCY_RATE}/s      p50 {report.ack_latency_ms['p50']:.1f} ms, p99 "
          f"{report.ack_latency_ms['p99']:.1f} ms (echo p50 {report.baseline_latency_ms['p50']:.1f}, p99 "
          f"{report.baseline_latency_ms['p99']:.1f})")
    print(f"  pod envelope -> Running       p50 {report.pod_start_s['p50']:.2f} s, p99 "
          f"{report.pod_start_s['p99']:.2f} s (goal p50 <= 1.0 s)")
    print(f"  offline restore of the pods   {report.offline_restore_s:.2f} s (goal <= 5 s for 10 pods)")
