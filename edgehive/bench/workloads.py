"""``edgehive bench workloads``: a Deployment through the scheduler and controller-manager, against plain pods.

On the full control plane (kube-apiserver, kube-controller-manager, kube-scheduler) and one real edge node
(its five components and podman, real pods): first ``replicas`` plain pods bound by ``spec.nodeName`` (what
the other benchmarks start), then a Deployment of ``replicas`` on the same node, which the ReplicaSet
controller creates and the scheduler binds. Per pod, create to Running is measured from the moment a watch of
the API server first shows the pod to the moment it shows it Running, so the scheduler's binding is inside
the Deployment's figures; ``ratio`` is the Deployment's p50 over the plain pods' p50.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

from cloud.kube import Kube, KubeError
from edgehive.bench.harness import BenchError, percentiles, progress_printer, wait_until
from edgehive.bench.system import IMAGE, NAMESPACE, NODE, start_system
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


class PodTimes:
    """When a watch of the bench's namespace first showed each pod, and first showed it Running."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.seen: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.error: Exception | None = None
        self._lock = threading.Lock()
        _items, rv = kube.list(kinds.POD)
        threading.Thread(target=self._watch, args=(rv,), name="pod-watch", daemon=True).start()

    def _watch(self, rv: str) -> None:
        try:
            for event, pod in self.kube.watch(kinds.POD, rv, timeout_s=3600):
                now = time.perf_counter_ns()
                meta = pod.get("metadata") or {}
                if event == "BOOKMARK" or meta.get("namespace") != NAMESPACE:
                    continue
                name = str(meta.get("name"))
                with self._lock:
                    self.seen.setdefault(name, now)
                    if _running(pod):
                        self.running.setdefault(name, now)
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


def _deployment(replicas: int) -> dict[str, Any]:
    labels = {"bench": "deployment"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "deploy"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [_container()]}}}}


def _no_token_automount(kube: Kube) -> None:
    """TEMPORARY, until EdgeD serves serviceAccountToken projections: the namespace's default ServiceAccount
    (made by the controller-manager) mounts no token, so that its pods get no ``kube-api-access-*`` volume."""
    def patched() -> bool:
        try:
            kube.core.patch_namespaced_service_account("default", NAMESPACE, {"automountServiceAccountToken": False})
        except Exception:  # not made yet: waited for
            return False
        return True

    wait_until(patched, 30, f"the default ServiceAccount of {NAMESPACE}", poll=0.1)


def _node_ready(kube: Kube) -> bool:
    node = kube.get_node(NODE) or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _ready_replicas(kube: Kube) -> int:
    deployment = kube.custom.get_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments", "deploy")
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def bench_workloads(replicas: int = 100, broker: str = "amqtt", progress: bool = True) -> WorkloadsReport:
    say = progress_printer("workloads", progress)
    timeout = 60 + TIMEOUT_PER_POD_S * replicas
    with ExitStack() as stack:
        system = start_system(stack, broker, say, control_plane=True)
        kube = system.kube
        _no_token_automount(kube)
        wait_until(lambda: _node_ready(kube), 60, f"node {NODE} Ready")
        times = PodTimes(kube)

        say(f"{replicas} plain pods with nodeName {NODE}")
        start = time.perf_counter()
        for i in range(replicas):
            kube.core.create_namespaced_pod(NAMESPACE, _plain_pod(f"plain-{i}"))
        wait_until(lambda: times.running_count("plain-") >= replicas, timeout, f"{replicas} plain pods Running",
                   progress=lambda: f"{times.running_count('plain-')} Running", say=say)
        plain_ready = time.perf_counter() - start  # from the first create
        kube.core.delete_collection_namespaced_pod(NAMESPACE, label_selector="bench=plain")
        say("waiting for the plain pods to be stopped and gone")
        wait_until(lambda: not kube.core.list_namespaced_pod(NAMESPACE, label_selector="bench=plain").items,
                   timeout, "the plain pods gone", poll=0.5)

        say(f"a Deployment of {replicas} replicas through the scheduler")
        start = time.perf_counter()
        kube.custom.create_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments", _deployment(replicas))
        wait_until(lambda: _ready_replicas(kube) >= replicas, timeout, f"{replicas} replicas Ready",
                   progress=lambda: f"{_ready_replicas(kube)} Ready", say=say, poll=0.05)
        deploy_ready = time.perf_counter() - start
        wait_until(lambda: times.running_count("deploy-") >= replicas, 30, "the watch to show every replica")
        plain = percentiles(times.latencies_ns("plain-"))
        deployed = percentiles(times.latencies_ns("deploy-"))
    return WorkloadsReport(replicas=replicas, nodes=1, deploy_ready_s=round(deploy_ready, 2),
                           plain_ready_s=round(plain_ready, 2), pod_running_ms=deployed,
                           plain_pod_running_ms=plain, ratio=round(deployed["p50"] / plain["p50"], 3))


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
