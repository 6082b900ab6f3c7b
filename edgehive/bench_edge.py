"""``edgehive bench edge``: what an edge node costs, against a baseline measured in the same run.

- commits: 1,000 ConfigMaps sent down the link, each acknowledged by MetaManager
  after its SQLite commit; the baseline is the same publishes answered by a bare
  echo client at the same place (the edge broker), through the same brokers and
  bridge, so the difference is EdgeHub + MetaManager + the commit.
- pod start: the time from a pod's envelope to its Running status arriving back
  at the cloud, over 20 pods one after another.
- offline restore: 10 pods running, the link cut, every edge process stopped and
  every container removed (a reboot); the time from starting the edge processes
  again until all 10 run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.embedded import BrokerSettings
from broker.launch import broker_argv, wait_ready
from broker.passwords import set_password
from edgehive.bench import BenchError, _free_port, _percentiles, _process, bench_workdir, watch_envelopes
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, EnvelopeError, Group, Op, decode
from schemas.resource import ResourceKey

NODE = "bench-edge"
CLOUD_PW, NODE_PW = "bench-cloud", "bench-node"
BUSYBOX_ROOTFS = Path(os.environ.get("EDGEHIVE_CACHE", "/opt/edgehive")) / "images" / "busybox-rootfs.tar"
IMAGE = "localhost/busybox:latest"


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


class _Cloud:
    """The bench's cloud end: sends on the down topic, collects replies and pod statuses."""

    def __init__(self, url: BrokerUrl) -> None:
        self.replies: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self._cond = threading.Condition()
        self.connection = watch_envelopes(url, "bench-cloud", topics.link_up(NODE), self._on_envelope,
                                          "the node's link", window=200)

    def _on_envelope(self, envelope: Envelope, now: int) -> None:
        with self._cond:
            if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent:
                self.replies[envelope.parent] = now
            elif envelope.res is not None and envelope.res.kind == "podstatus":
                status = (envelope.body or {}).get("status") or {}
                containers = status.get("containerStatuses") or []
                if status.get("phase") == "Running" and containers and all(
                        "running" in c.get("state", {}) for c in containers):
                    self.running.setdefault(envelope.res.name, now)
            self._cond.notify_all()
        if envelope.op not in (Op.RESPONSE, Op.ERROR, Op.KEEPALIVE, Op.QUERY):
            ack = envelope.reply("cloudhub", {"ok": True}).encode()
            threading.Thread(target=self.connection.publish, args=(topics.link_down(NODE), ack), daemon=True).start()

    def send(self, envelope: Envelope) -> int:
        sent = time.perf_counter_ns()
        self.connection.publish(topics.link_down(NODE), envelope.encode(), timeout=30)
        return sent

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise BenchError(f"bench edge: timed out after {timeout:.0f} s waiting for {what}")

    def close(self) -> None:
        self.connection.close(drain_timeout=1)


class _Echo:
    """The baseline: answers every downstream envelope at once, from the edge broker."""

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

    def _on_message(self, incoming: Incoming) -> None:
        incoming.ack()
        try:
            envelope = decode(incoming.payload)
        except EnvelopeError:
            return
        with self._cond:
            self._queue.append(envelope.reply("echo", {"outcome": "applied"}).encode())
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
    sent: dict[str, int] = {}
    start = time.perf_counter_ns()
    for i, envelope in enumerate(envelopes):
        if rate is not None:
            due = start + int(i * 1e9 / rate)
            while (now := time.perf_counter_ns()) < due:
                time.sleep(min(0.001, (due - now) / 1e9))
        sent[envelope.id] = cloud.send(envelope)
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


class _EdgeProcesses:
    def __init__(self, work: Path, edge_url: BrokerUrl, podman_url: str) -> None:
        self.work = work
        self.edge_url = edge_url
        self.podman_url = podman_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, with_edged: bool = True) -> None:
        common = ["--node", NODE, "--broker", str(self.edge_url)]
        argvs = [
            ["edge.edgehub", "--outbox", str(self.work / "outbox.db")],
            ["edge.metamanager", "--db", str(self.work / "meta.db")],
        ]
        if with_edged:
            argvs.append(["edge.edged", "--podman-url", self.podman_url, "--data-dir", str(self.work / "edged")])
            argvs.append(["edge.devicetwin", "--db", str(self.work / "devicetwin.db")])
            argvs.append(["edge.eventbus"])
        for module, *extra in argvs:
            log = (self.work / f"{module}.log").open("ab")
            self.procs.append(subprocess.Popen([sys.executable, "-m", module, *common, *extra], stdout=log,
                                               stderr=subprocess.STDOUT))
            log.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


def bench_edge(objects: int = 1000, pods: int = 20, restore_pods: int = 10, progress: bool = True,
               broker: str = "amqtt") -> EdgeReport:
    def say(text: str) -> None:
        if progress:
            print(f"bench edge: {text}", file=sys.stderr, flush=True)

    podman_bin = shutil.which("podman")
    if podman_bin is None or not BUSYBOX_ROOTFS.is_file():
        raise BenchError("bench edge needs podman and the busybox image: run scripts/setup first")
    with ExitStack() as stack:
        work = bench_workdir(stack, "ehbe-")
        say(f"working in {work}")
        passwd = work / "passwd"
        set_password(passwd, "cloud", CLOUD_PW)
        set_password(passwd, NODE, NODE_PW)
        cloud_port, edge_port = _free_port(), _free_port()
        for sub in ("cloud", "edge"):
            (work / sub).mkdir()
        say("starting brokers, bridge and a private podman service")
        stack.enter_context(_process(broker_argv(broker, BrokerSettings(
            listen=(f"127.0.0.1:{cloud_port}",), password_file=str(passwd)), work / "cloud"), work / "cloud.log"))
        stack.enter_context(_process(broker_argv(broker, BrokerSettings(listen=(f"127.0.0.1:{edge_port}",)),
                                                 work / "edge"), work / "edge.log"))
        cloud_url = BrokerUrl("127.0.0.1", cloud_port, username="cloud", password=CLOUD_PW)
        edge_url = BrokerUrl("127.0.0.1", edge_port)
        if not (wait_ready(cloud_url, 20) and wait_ready(edge_url, 20)):
            raise BenchError(f"bench edge: brokers did not start; see {work}")
        flags = ["--root", str(work / "pm/root"), "--runroot", str(work / "pm/run"), "--tmpdir", str(work / "pm/tmp")]
        subprocess.run([podman_bin, *flags, "import", "--quiet", "--change", 'CMD ["/bin/sh"]', str(BUSYBOX_ROOTFS),
                        IMAGE], check=True, capture_output=True)
        podman_sock = work / "podman.sock"
        stack.enter_context(_process([podman_bin, *flags, "system", "service", "--time=0", f"unix://{podman_sock}"],
                                     work / "podman.log"))
        stack.callback(lambda: subprocess.run([podman_bin, *flags, "system", "reset", "--force"],
                                              capture_output=True, check=False))
        stack.callback(lambda: subprocess.run([podman_bin, *flags, "pod", "rm", "--all", "--force", "--time", "0"],
                                              capture_output=True, check=False))
        bridge_argv = [sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", str(edge_url),
                       "--cloud", f"mqtt://{NODE}:{NODE_PW}@127.0.0.1:{cloud_port}"]
        bridge = stack.enter_context(_Restartable(bridge_argv, work / "bridge.log"))
        cloud = _Cloud(cloud_url)
        stack.callback(cloud.close)
        _wait_link(edge_url, up=True)

        say(f"baseline: {objects} ConfigMaps answered by an echo client on the edge broker")
        echo = _Echo(edge_url)
        baseline_rate, _ = _measure(cloud, _configmaps(objects, "echo"))
        _, baseline_lat = _measure(cloud, _configmaps(2 * LATENCY_RATE, "echo-lat"), LATENCY_RATE)
        echo.close()

        edge = _EdgeProcesses(work, edge_url, f"unix://{podman_sock}")
        stack.callback(edge.stop)
        edge.start()
        _wait_status(edge_url, ("edgehub", "metamanager", "edged"))
        say(f"commits: {objects} ConfigMaps through EdgeHub and MetaManager")
        commit_rate, _ = _measure(cloud, _configmaps(objects, "cm"))
        say(f"latency: {2 * LATENCY_RATE} ConfigMaps at {LATENCY_RATE}/s, each path")
        _, commit_lat = _measure(cloud, _configmaps(2 * LATENCY_RATE, "cm-lat"), LATENCY_RATE)

        say(f"pod start: {pods} pods, one after another")
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
        deadline = time.monotonic() + 120
        while _running_containers(podman_bin, flags) > 0:
            if time.monotonic() > deadline:
                raise BenchError("bench edge: deleted pods were still running after 120 s")
            time.sleep(0.1)

        say(f"offline restore: {restore_pods} pods, link cut, edge processes stopped, containers removed")
        names = [f"restore-{i}" for i in range(restore_pods)]
        for name in names:
            cloud.send(_pod_envelope(name))
        cloud.wait(lambda: all(n in cloud.running for n in names), 120, "the restore pods Running")
        bridge.stop()
        _wait_link(edge_url, up=False)
        edge.stop()
        subprocess.run([podman_bin, *flags, "pod", "rm", "--all", "--force", "--time", "0"], check=True,
                       capture_output=True)
        t0 = time.monotonic()
        edge.start()
        expected = len(names)
        while _running_containers(podman_bin, flags) < expected:
            if time.monotonic() - t0 > 120:
                raise BenchError("bench edge: pods were not restored within 120 s")
            time.sleep(0.05)
        restore = time.monotonic() - t0
    start_p = {k: round(v / 1000, 3) for k, v in _percentiles([int(s * 1e9) for s in starts]).items()}
    return EdgeReport(
        broker=broker, objects=objects, commit_per_s=round(commit_rate, 1), baseline_per_s=round(baseline_rate, 1),
        ratio=round(commit_rate / baseline_rate, 3), ack_latency_ms=_percentiles(commit_lat),
        baseline_latency_ms=_percentiles(baseline_lat), pod_start_s=start_p, offline_restore_s=round(restore, 2),
    )


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


def _running_containers(podman_bin: str, flags: list[str]) -> int:
    out = subprocess.run([podman_bin, *flags, "ps", "--filter", "label=io.edgehive.container", "--format", "{{.ID}}"],
                         capture_output=True, text=True, check=False).stdout
    return len(out.split())


def _watch(edge_url: BrokerUrl, topic: str, accept: Any, timeout: float, what: str) -> None:
    done = threading.Event()

    def on_message(incoming: Incoming) -> None:
        incoming.ack()
        try:
            if accept(incoming.topic, decode(incoming.payload)):
                done.set()
        except EnvelopeError:
            pass

    watch = Connection(ConnectionSettings(url=edge_url, client_id=f"bench-watch-{uuid.uuid4().hex[:6]}"),
                       name="bench-watch")
    watch.subscribe(topic)
    watch.on_message(on_message)
    watch.start()
    try:
        if not done.wait(timeout):
            raise BenchError(f"bench edge: timed out waiting for {what}")
    finally:
        watch.close(drain_timeout=0)


def _wait_link(edge_url: BrokerUrl, up: bool) -> None:
    _watch(edge_url, topics.link_state(NODE), lambda _t, e: (e.op == Op.CONNECTED) == up, 30,
           f"the link to be {'up' if up else 'down'}")


def _wait_status(edge_url: BrokerUrl, components: tuple[str, ...]) -> None:
    seen: set[str] = set()

    def accept(topic: str, envelope: Envelope) -> bool:
        if (envelope.body or {}).get("state") == "up":
            seen.add(topic.rsplit("/", 1)[-1])
        return seen >= set(components)

    _watch(edge_url, topics.all_status(), accept, 60, f"{', '.join(components)} to report up")


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
