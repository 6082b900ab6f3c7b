"""``edgehive bench cloud``: from the Kubernetes API to the edge, against the API server's own rate.

(a) 1,000 ConfigMaps used by a pod on one node, created one after another by one
client: objects per second from the first create to the last acknowledged edge
commit, against the same client's raw create rate (ConfigMaps no pod uses, which
go nowhere) measured in the same run; and the create-to-commit latency at 100
objects/s. (b) Pod create to Running in the API server, over 20 pods.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.embedded import BrokerSettings
from broker.launch import broker_argv, wait_ready
from broker.passwords import set_password
from cloud.kube import Kube
from edgehive.bench import (
    BenchError,
    _free_port,
    _percentiles,
    _process,
    bench_apiserver,
    bench_workdir,
    watch_envelopes,
)
from edgehive.bench_edge import BUSYBOX_ROOTFS, IMAGE, _EdgeProcesses, _wait_status
from edgehive.bench_edge import NODE as BENCH_NODE
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Op

NODE = BENCH_NODE
NAMESPACE = "bench"
LATENCY_RATE = 100


@dataclass
class CloudReport:
    broker: str
    objects: int
    raw_create_per_s: float
    edge_commit_per_s: float
    ratio: float
    commit_latency_ms: dict[str, float]
    pod_running_s: dict[str, float]


class _Acks:
    """Watches the node's up topic on the cloud broker for MetaManager's commit acknowledgements."""

    def __init__(self, url: BrokerUrl) -> None:
        self.at: dict[str, int] = {}  # configmap name -> when its commit was acknowledged
        self._cond = threading.Condition()
        self.connection = watch_envelopes(url, "bench-acks", topics.link_up(NODE), self._on_envelope,
                                          "the node's acknowledgements")

    def _on_envelope(self, envelope: Envelope, now: int) -> None:
        if envelope.op == Op.RESPONSE and envelope.res is not None and envelope.res.kind == "configmap":
            with self._cond:
                self.at.setdefault(envelope.res.name, now)
                self._cond.notify_all()

    def wait(self, names: list[str], timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: all(n in self.at for n in names), timeout):
                missing = sum(1 for n in names if n not in self.at)
                raise BenchError(f"bench cloud: {missing} of {len(names)} ConfigMaps not acknowledged by the edge")

    def close(self) -> None:
        self.connection.close(drain_timeout=0)


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


def _consumer(names: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer"}, "spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "sleep 3600"], "volumeMounts": [{"name": "all", "mountPath": "/c"}]}],
        "volumes": [{"name": "all", "projected": {"sources": [{"configMap": {"name": n, "optional": True}}
                                                              for n in names]}}]}}


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "sleep 3600"]}]}}


def _running(core: Any, name: str) -> bool:
    pod = core.read_namespaced_pod(name, NAMESPACE)
    statuses = pod.status.container_statuses or []
    return bool(pod.status.phase == "Running" and statuses and all(s.state.running for s in statuses))


@dataclass
class System:
    """A whole edgehive system started by a benchmark, and what the benchmark needs to reach it."""

    work: Path
    kube: Kube
    cloud_url: BrokerUrl
    edge_url: BrokerUrl
    edge: _EdgeProcesses


def start_system(stack: ExitStack, broker: str, say: Any, *, before_edge: Any = None) -> System:
    """API server, brokers, CloudHub, EdgeController, DeviceController, bridge, a podman service and the edge
    components of node NODE, all stopped by ``stack``. ``before_edge(edge_url)`` runs before the edge components
    start (for a baseline that must have the edge broker to itself)."""
    podman_bin = shutil.which("podman")
    if podman_bin is None or not BUSYBOX_ROOTFS.is_file():
        raise BenchError("the benchmark needs podman and the busybox image: run scripts/setup first")
    work = bench_workdir(stack, "ehbench-")
    say(f"working in {work}; starting the API server, brokers, cloud and edge components")
    local = bench_apiserver(stack, work)
    local.prepare()
    stack.enter_context(_process(local.etcd_argv(), work / "etcd.log"))
    stack.enter_context(_process(local.apiserver_argv(), work / "apiserver.log"))
    passwd = work / "passwd"
    set_password(passwd, "cloud", "bench-cloud")
    set_password(passwd, NODE, "bench-node")
    cloud_port, edge_port = _free_port(), _free_port()
    for sub in ("cloud", "edge"):
        (work / sub).mkdir()
    stack.enter_context(_process(broker_argv(broker, BrokerSettings(
        listen=(f"127.0.0.1:{cloud_port}",), password_file=str(passwd)), work / "cloud"), work / "cloud.log"))
    stack.enter_context(_process(broker_argv(broker, BrokerSettings(listen=(f"127.0.0.1:{edge_port}",)),
                                             work / "edge"), work / "edge.log"))
    cloud_url = BrokerUrl("127.0.0.1", cloud_port, username="cloud", password="bench-cloud")
    edge_url = BrokerUrl("127.0.0.1", edge_port)
    _wait(local.ready, 60, f"the API server (see {work}/apiserver.log)")
    if not (wait_ready(cloud_url, 20) and wait_ready(edge_url, 20)):
        raise BenchError(f"brokers did not start; see {work}")
    env = {**os.environ, "EDGEHIVE_BROKER": cloud_url.with_password()}
    for component in ("cloudhub", "edgecontroller", "devicecontroller"):
        extra = [] if component == "cloudhub" else ["--kubeconfig", str(local.kubeconfig)]
        stack.enter_context(_process([sys.executable, "-m", f"cloud.{component}", *extra], work / f"{component}.log",
                                     env))
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
    stack.enter_context(_process([sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", str(edge_url),
                                  "--cloud", f"mqtt://{NODE}:bench-node@127.0.0.1:{cloud_port}"], work / "bridge.log"))
    if before_edge is not None:
        before_edge(edge_url)
    edge = _EdgeProcesses(work, edge_url, f"unix://{podman_sock}")
    stack.callback(edge.stop)
    edge.start()
    _wait_status(edge_url, ("edgehub", "metamanager", "edged", "devicetwin", "eventbus"))
    kube = Kube.connect(str(local.kubeconfig))
    stack.callback(kube.close)
    kube.core.create_namespace({"metadata": {"name": NAMESPACE}})
    _wait(lambda: kube.get_node(NODE) is not None, 60, "the edge node to register")
    return System(work, kube, cloud_url, edge_url, edge)


def bench_cloud(objects: int = 1000, pods: int = 20, broker: str = "amqtt", progress: bool = True) -> CloudReport:
    def say(text: str) -> None:
        if progress:
            print(f"bench cloud: {text}", file=sys.stderr, flush=True)

    with ExitStack() as stack:
        system = start_system(stack, broker, say)
        core, cloud_url = system.kube.core, system.cloud_url  # the bench is a Kubernetes client like kubectl
        acks = _Acks(cloud_url)
        stack.callback(acks.close)

        say(f"raw API server create rate: {objects} ConfigMaps no pod uses")
        start = time.perf_counter()
        for i in range(objects):
            core.create_namespaced_config_map(NAMESPACE, _configmap(f"unused-{i}"))
        raw_rate = objects / (time.perf_counter() - start)

        names = [f"cm-{i}" for i in range(objects)]
        latency_names = [f"lat-{i}" for i in range(2 * LATENCY_RATE)]
        core.create_namespaced_pod(NAMESPACE, _consumer(names + latency_names))
        say("waiting for the consumer pod to run")
        _wait(lambda: _running(core, "consumer"), 60, "the consumer pod Running")

        say(f"edge commits: {objects} ConfigMaps the consumer uses")
        start_ns = time.perf_counter_ns()
        for name in names:
            core.create_namespaced_config_map(NAMESPACE, _configmap(name))
        acks.wait(names, 120)
        edge_rate = objects / ((max(acks.at[n] for n in names) - start_ns) / 1e9)

        say(f"commit latency at {LATENCY_RATE} objects/s")
        created: dict[str, int] = {}
        t0 = time.perf_counter_ns()
        for i, name in enumerate(latency_names):
            due = t0 + int(i * 1e9 / LATENCY_RATE)
            while (now := time.perf_counter_ns()) < due:
                time.sleep(min(0.001, (due - now) / 1e9))
            created[name] = time.perf_counter_ns()
            core.create_namespaced_config_map(NAMESPACE, _configmap(name))
        acks.wait(latency_names, 60)
        latency = _percentiles([acks.at[n] - created[n] for n in latency_names])

        say(f"pod create -> Running in the API server, {pods} pods")
        starts = []
        for i in range(pods):
            name = f"start-{i}"
            t = time.perf_counter()
            core.create_namespaced_pod(NAMESPACE, _pod(name))
            _wait(lambda n=name: _running(core, n), 60, f"pod {name} Running")
            starts.append(time.perf_counter() - t)
    pod_p = {k: round(v / 1000, 3) for k, v in _percentiles([int(s * 1e9) for s in starts]).items()}
    return CloudReport(broker=broker, objects=objects, raw_create_per_s=round(raw_rate, 1),
                       edge_commit_per_s=round(edge_rate, 1), ratio=round(edge_rate / raw_rate, 3),
                       commit_latency_ms=latency, pod_running_s=pod_p)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"bench cloud: timed out waiting for {what}")
        time.sleep(0.02)


def print_report(report: CloudReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"broker": report.broker, "raw_create_per_s": report.raw_create_per_s,
                          "edge_commit_per_s": report.edge_commit_per_s, "ratio": report.ratio,
                          "commit_latency_ms": report.commit_latency_ms, "pod_running_s": report.pod_running_s}))
        return
    print(f"cloud benchmark, {report.objects} ConfigMaps, {report.broker} brokers")
    print(f"  raw API create rate          {report.raw_create_per_s:>8.0f}/s")
    print(f"  create -> edge commit        {report.edge_commit_per_s:>8.0f}/s   ratio {report.ratio:.2f} "
          f"(goal >= 0.8)")
    print(f"  commit latency at {LATENCY_RATE}/s      p50 {report.commit_latency_ms['p50']:.1f} ms, p99 "
          f"{report.commit_latency_ms['p99']:.1f} ms (goal p99 <= 250 ms)")
    print(f"  pod create -> Running        p50 {report.pod_running_s['p50']:.2f} s, p99 "
          f"{report.pod_running_s['p99']:.2f} s (goal p50 <= 1.0 s; KubeEdge at scale: 1.69 s)")
