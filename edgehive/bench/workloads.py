"""``edgehive bench workloads``: a Deployment through the scheduler and controller-manager, against plain pods.

On the full control plane (kube-apiserver, kube-controller-manager, kube-scheduler) and one real edge node
(its five components and podman, real pods): first ``replicas`` plain pods bound by ``spec.nodeName`` (what
the other benchmarks start), then a Deployment of ``replicas`` on the same node, which the ReplicaSet
controller creates and the scheduler binds. Per pod, create to Running is measured from the moment a watch of
the API server first shows the pod to the moment it shows it Running, so the scheduler's binding is inside
the Deployment's figures; ``ratio`` is the Deployment's p50 over the plain pods' p50. All ``replicas`` are
created at once, so their figures are mostly the node's queue; the ``one_at_a_time`` figures come first: a pod
created only once the one before runs (plain, then a Deployment scaled up by one), the latency of one pod.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from cloud.kube import Kube, KubeError
from edgehive.bench.harness import BenchError, percentiles, progress_printer, wait_until
from edgehive.bench.podmanfloor import PodmanFloor, measure_floor
from edgehive.bench.podtrace import PodTrace, format_breakdown, inspect_all
from edgehive.bench.system import IMAGE, NAMESPACE, NODE, Podman, start_system
from schemas import kinds

TIMEOUT_PER_POD_S = 3.0
"""The wait for all replicas Running: 60 s plus this per replica (real pods on a small machine)."""


@dataclass(frozen=True)
class WorkloadsReport:
    replicas: int
    nodes: int
    deploy_ready_s: float
    """From the Deployment's create to all its replicas Ready in its status."""
    plain_ready_s: float
    """From the first plain pod's create to all of them Running."""
    pod_running_ms: dict[str, float]
    """The Deployment's pods: first seen in the API to Running (p50, p99)."""
    plain_pod_running_ms: dict[str, float]
    ratio: float
    one_at_a_time: int
    one_pod_running_ms: dict[str, float]
    """A Deployment scaled up by one replica at a time: each new pod's first seen to Running."""
    one_plain_pod_running_ms: dict[str, float]
    one_ratio: float
    breakdown: dict[str, dict[str, dict[str, float]]]
    """Per group of pods (podtrace.py), per stage between creation and Running: p50, p99 (ms), pods measured."""
    podman_floor: PodmanFloor
    load_average: tuple[float, float]
    """The 1-minute load average when the bench started and when it ended (other work on the machine)."""


class PodTimes:
    """When a watch of the bench's namespace first showed each pod, and first showed it Running."""

    def __init__(self, kube: Kube, trace: PodTrace) -> None:
        self.kube = kube
        self.trace = trace
        self.seen: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.error: Exception | None = None
        self._lock = threading.Lock()
        _items, rv = kube.list(kinds.POD)
        threading.Thread(target=self._watch, args=(rv,), name="pod-watch", daemon=True).start()

    def _watch(self, rv: str) -> None:
        try:
            for event, pod in self.kube.watch(kinds.POD, rv, timeout_s=3600):
                now, wall = time.perf_counter_ns(), time.time_ns()
                meta = pod.get("metadata") or {}
                if event == "BOOKMARK" or meta.get("namespace") != NAMESPACE:
                    continue
                name = str(meta.get("name"))
                self.trace.on_pod(pod, wall)
                with self._lock:
                    self.seen.setdefault(name, now)
                    if _running(pod):
                        self.running.setdefault(name, now)
                        self.trace.on_running(name, wall)
        except (KubeError, OSError) as exc:  # the bench reports it at its next wait
            self.error = exc

    def running_count(self, prefix: str) -> int:
        if self.error is not None:
            raise BenchError(f"the pod watch failed: {self.error}")
        with self._lock:
            return sum(1 for name in self.running if name.startswith(prefix))

    def latencies_ns(self, prefix: str) -> list[int]:
        with self._lock:
            return [self.running[n] - self.seen[n] for n in self.running if n.startswith(prefix)]


def _running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return bool(status.get("phase") == "Running" and statuses
                and all("running" in (s.get("state") or {}) for s in statuses))


def _container() -> dict[str, Any]:
    return {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}


def _plain_pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "plain"}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [_container()]}}


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"bench": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [_container()]}}}}


def _service_account(kube: Kube) -> None:
    """Waits for the namespace's default ServiceAccount, which the controller-manager makes: the API server
    refuses pods without it (their ``kube-api-access-*`` volume names it)."""
    def made() -> bool:
        try:
            kube.core.read_namespaced_service_account("default", NAMESPACE)
        except Exception:  # not made yet: waited for
            return False
        return True

    wait_until(made, 30, f"the default ServiceAccount of {NAMESPACE}", poll=0.1)


def _node_ready(kube: Kube) -> bool:
    node = kube.get_node(NODE) or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _ready_replicas(kube: Kube, name: str = "deploy") -> int:
    deployment = kube.custom.get_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments", name)
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def _more_running(times: PodTimes, prefix: str, than: int) -> bool:
    return times.running_count(prefix) > than


def _one_at_a_time(kube: Kube, times: PodTimes, count: int, say: Callable[[str], None], podman: Podman) -> None:
    """``count`` plain pods, then a Deployment ``step`` scaled up to ``count``, each pod once the last runs."""
    say(f"{count} plain pods one at a time, then a Deployment scaled up one replica at a time")
    for i in range(count):
        kube.core.create_namespaced_pod(NAMESPACE, _plain_pod(f"one-{i}"))
        wait_until(partial(_more_running, times, "one-", i), 60, f"plain pod one-{i} Running")
    times.trace.read_podman(partial(inspect_all, podman.run))
    kube.core.delete_collection_namespaced_pod(NAMESPACE, label_selector="bench=plain")
    kube.custom.create_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments", _deployment("step", 0))
    for i in range(count):
        kube.custom.patch_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments", "step",
                                                   {"spec": {"replicas": i + 1}})
        wait_until(partial(_more_running, times, "step-", i), 60, f"replica {i + 1} of step Running")
    times.trace.read_podman(partial(inspect_all, podman.run))
    kube.custom.delete_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments", "step",
                                                body={"propagationPolicy": "Foreground"})
    wait_until(lambda: not kube.core.list_namespaced_pod(NAMESPACE).items, 120, "the pods gone", poll=0.5)


def bench_workloads(replicas: int = 100, broker: str = "amqtt", progress: bool = True,
                    one_at_a_time: int = 10) -> WorkloadsReport:
    say = progress_printer("workloads", progress)
    timeout = 60 + TIMEOUT_PER_POD_S * replicas
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        system = start_system(stack, broker, say, control_plane=True)
        kube = system.kube
        _service_account(kube)
        wait_until(lambda: _node_ready(kube), 60, f"node {NODE} Ready")
        say("podman alone: pod create + run, the floor")
        floor = measure_floor(system.podman)
        trace = PodTrace(NAMESPACE)
        trace.watch_brokers(NODE, system.cloud_url, system.edge_url)
        stack.callback(trace.close)
        times = PodTimes(kube, trace)
        _one_at_a_time(kube, times, one_at_a_time, say, system.podman)

        say(f"{replicas} plain pods with nodeName {NODE}")
        start = time.perf_counter()
        for i in range(replicas):
            kube.core.create_namespaced_pod(NAMESPACE, _plain_pod(f"plain-{i}"))
        wait_until(lambda: times.running_count("plain-") >= replicas, timeout, f"{replicas} plain pods Running",
                   progress=lambda: f"{times.running_count('plain-')} Running", say=say)
        plain_ready = time.perf_counter() - start  # from the first create
        trace.read_podman(partial(inspect_all, system.podman.run))
        kube.core.delete_collection_namespaced_pod(NAMESPACE, label_selector="bench=plain")
        say("waiting for the plain pods to be stopped and gone")
        wait_until(lambda: not kube.core.list_namespaced_pod(NAMESPACE, label_selector="bench=plain").items,
                   timeout, "the plain pods gone", poll=0.5)

        say(f"a Deployment of {replicas} replicas through the scheduler")
        start = time.perf_counter()
        kube.custom.create_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments",
                                                    _deployment("deploy", replicas))
        wait_until(lambda: _ready_replicas(kube) >= replicas, timeout, f"{replicas} replicas Ready",
                   progress=lambda: f"{_ready_replicas(kube)} Ready", say=say, poll=0.05)
        deploy_ready = time.perf_counter() - start
        wait_until(lambda: times.running_count("deploy-") >= replicas, 30, "the watch to show every replica")
        trace.read_podman(partial(inspect_all, system.podman.run))
        breakdown = {"one_deployment": trace.breakdown("step-"), "one_plain": trace.breakdown("one-"),
                     "deployment": trace.breakdown("deploy-"), "plain": trace.breakdown("plain-")}
        plain = percentiles(times.latencies_ns("plain-"))
        deployed = percentiles(times.latencies_ns("deploy-"))
        one_plain = percentiles(times.latencies_ns("one-"))
        one_deployed = percentiles(times.latencies_ns("step-"))
    return WorkloadsReport(replicas=replicas, nodes=1, deploy_ready_s=round(deploy_ready, 2),
                           plain_ready_s=round(plain_ready, 2), pod_running_ms=deployed,
                           plain_pod_running_ms=plain, ratio=round(deployed["p50"] / plain["p50"], 3),
                           one_at_a_time=one_at_a_time, one_pod_running_ms=one_deployed,
                           one_plain_pod_running_ms=one_plain,
                           one_ratio=round(one_deployed["p50"] / one_plain["p50"], 3), breakdown=breakdown,
                           podman_floor=floor, load_average=(load_before, os.getloadavg()[0]))


def print_report(report: WorkloadsReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(report)))
        return
    print(f"workloads benchmark, {report.replicas} real pods on {report.nodes} edge node")
    print(f"  Deployment to all Ready      {report.deploy_ready_s:>8.1f} s   "
          f"(plain pods: {report.plain_ready_s:.1f} s)")
    print(f"  pod create -> Running        p50 {report.pod_running_ms['p50']:.0f} ms, p99 "
          f"{report.pod_running_ms['p99']:.0f} ms (goal p50 <= 1500, p99 <= 3000; KubeEdge 1690/4090)")
    print(f"  plain pods (nodeName)        p50 {report.plain_pod_running_ms['p50']:.0f} ms, p99 "
          f"{report.plain_pod_running_ms['p99']:.0f} ms   ratio {report.ratio:.2f}")
    print(f"  one pod at a time ({report.one_at_a_time})      p50 {report.one_pod_running_ms['p50']:.0f} ms, p99 "
          f"{report.one_pod_running_ms['p99']:.0f} ms; plain p50 {report.one_plain_pod_running_ms['p50']:.0f} ms, "
          f"ratio {report.one_ratio:.2f}")
    floor = report.podman_floor
    print(f"  podman alone (floor, {floor.rounds})     pod create p50 {floor.pod_create_ms['p50']:.0f} ms + run p50 "
          f"{floor.run_ms['p50']:.0f} ms = {floor.total_ms['p50']:.0f} ms (p99 {floor.total_ms['p99']:.0f}); "
          f"REST API p50 {floor.rest_ms['p50']:.0f} ms (p99 {floor.rest_ms['p99']:.0f})")
    print(f"  load average (1 min)         {report.load_average[0]:.1f} at the start, {report.load_average[1]:.1f} "
          "at the end")
    for line in format_breakdown(report.breakdown):
        print(line)
