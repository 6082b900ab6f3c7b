"""``edgehive bench cloud``: from the Kubernetes API to the edge, against the API server's own rate.

(a) 1,000 ConfigMaps used by a pod on one node, created one after another by one
client: objects per second from the first create to the last acknowledged edge
commit, against the same client's raw create rate (ConfigMaps no pod uses, which
go nowhere) measured in the same run; and the create-to-commit latency at 100
objects/s. (b) Pod create to Running in the API server, over 20 pods.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from edgehive.bench.harness import (
    CommitAcks,
    configmap_manifest,
    consumer_pod,
    percentiles,
    progress_printer,
    wait_until,
)
from edgehive.bench.system import IMAGE, NAMESPACE, NODE, start_system

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


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "sleep 3600"]}]}}


def _running(core: Any, name: str) -> bool:
    pod = core.read_namespaced_pod(name, NAMESPACE)
    statuses = pod.status.container_statuses or []
    return bool(pod.status.phase == "Running" and statuses and all(s.state.running for s in statuses))


def bench_cloud(objects: int = 1000, pods: int = 20, broker: str = "amqtt", progress: bool = True) -> CloudReport:
    say = progress_printer("cloud", progress)
    with ExitStack() as stack:
        system = start_system(stack, broker, say)
        core, cloud_url = system.kube.core, system.cloud_url  # the bench is a Kubernetes client like kubectl
        acks = CommitAcks(cloud_url, NODE)
        stack.callback(acks.close)

        say(f"raw API server create rate: {objects} ConfigMaps no pod uses")
        start = time.perf_counter()
        for i in range(objects):
            core.create_namespaced_config_map(NAMESPACE, configmap_manifest(f"unused-{i}"))
        raw_rate = objects / (time.perf_counter() - start)

        names = [f"cm-{i}" for i in range(objects)]
        latency_names = [f"lat-{i}" for i in range(2 * LATENCY_RATE)]
        core.create_namespaced_pod(NAMESPACE, consumer_pod(NODE, names + latency_names, IMAGE))
        say("waiting for the consumer pod to run")
        wait_until(lambda: _running(core, "consumer"), 60, "the consumer pod Running", poll=0.02)

        say(f"edge commits: {objects} ConfigMaps the consumer uses")
        edge_rate = acks.delivery_rate(core, NAMESPACE, names, 120)

        say(f"commit latency at {LATENCY_RATE} objects/s")
        created: dict[str, int] = {}
        t0 = time.perf_counter_ns()
        for i, name in enumerate(latency_names):
            due = t0 + int(i * 1e9 / LATENCY_RATE)
            while (now := time.perf_counter_ns()) < due:
                time.sleep(min(0.001, (due - now) / 1e9))
            created[name] = time.perf_counter_ns()
            core.create_namespaced_config_map(NAMESPACE, configmap_manifest(name))
        acks.wait(latency_names, 60)
        latency = percentiles([acks.at[n] - created[n] for n in latency_names])

        say(f"pod create -> Running in the API server, {pods} pods")
        starts = []
        for i in range(pods):
            name = f"start-{i}"
            t = time.perf_counter()
            core.create_namespaced_pod(NAMESPACE, _pod(name))
            wait_until(partial(_running, core, name), 60, f"pod {name} Running", poll=0.02)
            starts.append(time.perf_counter() - t)
    pod_p = {k: round(v / 1000, 3) for k, v in percentiles([int(s * 1e9) for s in starts]).items()}
    return CloudReport(broker=broker, objects=objects, raw_create_per_s=round(raw_rate, 1),
                       edge_commit_per_s=round(edge_rate, 1), ratio=round(edge_rate / raw_rate, 3),
                       commit_latency_ms=latency, pod_running_s=pod_p)


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
