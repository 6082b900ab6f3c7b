"""One reading of the node's resource figures: the node from ``/proc``, its pods' containers from podman.

Only containers EdgeD runs for this node count: podman is asked for running containers carrying this
node's ``NODE_LABEL`` (edge/podlabels.py), so a pod of another node, a container someone ran by hand on
the same host, or a pod's infra container is never reported. CPU is podman's cumulative ``CPUNano``;
the working set is podman's ``MemUsage``, which podman takes from the container's cgroup less its
inactive file cache, the kubelet's definition.

Rates (the Summary's ``usageNanoCores``) need two readings: ``Rates`` keeps the previous cumulative
figure of each node and container, as cAdvisor keeps its history for the kubelet. Until a second reading
a second or more later, a figure has no rate and the Summary leaves ``usageNanoCores`` out, as the kubelet
does after its start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from edge.podlabels import CONTAINER_LABEL, NAMESPACE_LABEL, NODE_LABEL, POD_LABEL, UID_LABEL
from edge.stream.nodestats import NodeSample, NodeStatsError, read_node
from edge.stream.podmanapi import PodmanApi, PodmanApiError

log = logging.getLogger(__name__)

MIN_RATE_INTERVAL_S = 1.0
"""Readings closer than this to the previous one reuse its rate: a rate over a few ms is mostly noise."""


@dataclass(frozen=True, slots=True)
class ContainerSample:
    id: str
    namespace: str
    pod: str
    pod_uid: str
    container: str
    started: float  # seconds since the epoch
    at: float
    cpu_ns: int
    working_set: int


@dataclass(frozen=True)
class Snapshot:
    node: NodeSample | None
    containers: list[ContainerSample]
    errors: list[str] = field(default_factory=list)
    """What could not be read: the answer still has the rest, and ``scrape_error`` is 1."""

    def pods(self) -> dict[tuple[str, str], list[ContainerSample]]:
        """The containers by pod (namespace, name), in a stable order."""
        out: dict[tuple[str, str], list[ContainerSample]] = {}
        for sample in sorted(self.containers, key=lambda c: (c.namespace, c.pod, c.container)):
            out.setdefault((sample.namespace, sample.pod), []).append(sample)
        return out


class Rates:
    """Nanocores of each node and container, from its previous cumulative CPU reading (thread-safe: several
    metrics requests may run at once)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}
        self._rate: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, key: str, at: float, cpu_ns: int) -> int | None:
        with self._lock:
            last = self._last.get(key)
            if last is None or cpu_ns < last[1]:  # first reading, or a new container under the same key
                self._last[key] = (at, cpu_ns)
                self._rate.pop(key, None)
                return None
            if at - last[0] >= MIN_RATE_INTERVAL_S:
                self._rate[key] = int((cpu_ns - last[1]) / (at - last[0]))
                self._last[key] = (at, cpu_ns)
            return self._rate.get(key)

    def forget_except(self, keys: set[str]) -> None:
        """Drop what is kept for containers that are gone."""
        with self._lock:
            for key in set(self._last) - keys:
                self._last.pop(key, None)
                self._rate.pop(key, None)


def take(api: PodmanApi, node: str, proc: Path = Path("/proc")) -> Snapshot:
    errors: list[str] = []
    try:
        node_sample: NodeSample | None = read_node(proc)
    except NodeStatsError as exc:
        node_sample = None
        errors.append(str(exc))
    try:
        containers = _containers(api, node)
    except PodmanApiError as exc:
        try:  # a container that stopped between the list and the stats fails the whole stats call: once more
            containers = _containers(api, node)
        except PodmanApiError:
            containers = []
            errors.append(str(exc))
    for message in errors:
        log.warning("resource metrics of node %s: %s", node, message)
    return Snapshot(node_sample, containers, errors)


def _containers(api: PodmanApi, node: str) -> list[ContainerSample]:
    query = urlencode({"filters": json.dumps({"label": [f"{NODE_LABEL}={node}"], "status": ["running"]})})
    listed = api.get_json(f"/containers/json?{query}")
    found: dict[str, dict[str, Any]] = {}
    for item in listed if isinstance(listed, list) else []:
        labels: dict[str, Any] = item.get("Labels") or {}
        if CONTAINER_LABEL in labels and not item.get("IsInfra") and labels.get(NODE_LABEL) == node:
            found[str(item.get("Id", ""))] = item
    if not found:
        return []  # podman's stats of no container named are those of every container: not asked
    stats = api.get_json("/containers/stats?" + urlencode(
        [("stream", "false"), *(("containers", cid) for cid in found)]))
    if isinstance(stats, dict) and stats.get("Error"):
        raise PodmanApiError(502, f"podman's stats failed: {stats['Error']}")
    out = []
    for entry in (stats or {}).get("Stats") or []:
        item = found.get(str(entry.get("ContainerID", "")))
        if item is None:
            continue
        labels = item.get("Labels") or {}
        at = int(entry.get("SystemNano") or 0) / 1e9 or time.time()  # podman's time of the reading
        out.append(ContainerSample(
            id=str(item["Id"]), namespace=str(labels.get(NAMESPACE_LABEL, "")), pod=str(labels.get(POD_LABEL, "")),
            pod_uid=str(labels.get(UID_LABEL, "")), container=str(labels[CONTAINER_LABEL]),
            started=float(item.get("StartedAt") or 0), at=at, cpu_ns=int(entry.get("CPUNano") or 0),
            working_set=int(entry.get("MemUsage") or 0)))
    return out
