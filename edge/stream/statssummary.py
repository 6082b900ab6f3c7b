"""The kubelet's ``/stats/summary`` (its statsapi v1alpha1 Summary) from a Snapshot.

What metrics-server (before 0.6) and ``kubectl get --raw`` read: the node's and each pod's and container's
``cpu`` (``time``, ``usageCoreNanoSeconds``, ``usageNanoCores``) and ``memory`` (``time``,
``workingSetBytes``; for the node also ``usageBytes``, ``availableBytes``, ``rssBytes``). Fields we have
no reading for (network, filesystems, volumes, page faults) are left out, as the kubelet leaves out what
cAdvisor has not measured: a reader sees them absent, never a made-up zero. ``usageNanoCores`` is absent
until a rate is known (edge/stream/metricssnapshot.py: Rates).
"""

from __future__ import annotations

import json
from typing import Any

from edge.stream.metricssnapshot import ContainerSample, Rates, Snapshot
from schemas.timefmt import rfc3339


def _cpu(at: float, cpu_ns: int, nanocores: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": rfc3339(at), "usageCoreNanoSeconds": cpu_ns}
    if nanocores is not None:
        out["usageNanoCores"] = nanocores
    return out


def render(snapshot: Snapshot, node_name: str, rates: Rates) -> bytes:
    summary: dict[str, Any] = {"node": {"nodeName": node_name}, "pods": []}
    node = snapshot.node
    if node is not None:
        summary["node"].update({
            "startTime": rfc3339(node.boot_time),
            "cpu": _cpu(node.at, node.cpu_ns, rates.observe("node", node.at, node.cpu_ns)),
            "memory": {"time": rfc3339(node.at), "availableBytes": node.available, "usageBytes": node.memory_usage,
                       "workingSetBytes": node.working_set, "rssBytes": node.rss},
        })
    keys = {"node"}
    for (namespace, pod), containers in snapshot.pods().items():
        entries = []
        pod_rate: int | None = 0
        for c in containers:
            key = f"container/{c.id}"
            keys.add(key)
            rate = rates.observe(key, c.at, c.cpu_ns)
            pod_rate = None if rate is None or pod_rate is None else pod_rate + rate
            entries.append({"name": c.container, "startTime": rfc3339(c.started),
                            "cpu": _cpu(c.at, c.cpu_ns, rate),
                            "memory": {"time": rfc3339(c.at), "workingSetBytes": c.working_set}})
        at = max(c.at for c in containers)
        summary["pods"].append({
            "podRef": {"name": pod, "namespace": namespace, "uid": containers[0].pod_uid},
            "startTime": rfc3339(_pod_start(containers)),
            "containers": entries,
            "cpu": _cpu(at, sum(c.cpu_ns for c in containers), pod_rate),
            "memory": {"time": rfc3339(at), "workingSetBytes": sum(c.working_set for c in containers)},
        })
    rates.forget_except(keys)
    return json.dumps(summary, indent=2).encode()


def _pod_start(containers: list[ContainerSample]) -> float:
    return min(c.started for c in containers)
