"""The last two scrapes of each node, and the usage they give: metrics-server's way.

CPU usage is a rate: the difference of two cumulative readings over the time between them (each reading
carries its own time, so a slow scrape does not skew it). A node or container is reported once two
readings of it exist; a container whose start time changed, or whose counter went back, restarted and has
no rate until its next reading. A pod is reported only when every one of its containers is, so that its
sum is never a part passed off as the whole. A node not scraped successfully for ``stale_s`` is dropped
with its pods: old figures are not shown as current ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from schemas.kubeletmetrics import NodeScrape, Point


@dataclass(frozen=True, slots=True)
class Usage:
    at: float  # seconds since the epoch: the later reading's time
    window_s: float  # the time between the two readings
    cpu_nanocores: int
    memory_bytes: int


@dataclass(frozen=True)
class PodUsage:
    namespace: str
    name: str
    node: str
    containers: dict[str, Usage]

    @property
    def at(self) -> float:
        return max(u.at for u in self.containers.values())

    @property
    def window_s(self) -> float:
        return max(u.window_s for u in self.containers.values())


def usage(before: Point, after: Point) -> Usage | None:
    window = after.at - before.at
    if window <= 0 or after.cpu_s < before.cpu_s or after.started != before.started:
        return None
    return Usage(after.at, window, int((after.cpu_s - before.cpu_s) / window * 1e9), int(after.memory))


@dataclass
class _Node:
    before: NodeScrape | None
    after: NodeScrape
    scraped: float  # monotonic


class MetricsStore:
    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.Lock()

    def record(self, node: str, scrape: NodeScrape) -> None:
        with self._lock:
            last = self._nodes.get(node)
            self._nodes[node] = _Node(None if last is None else last.after, scrape, time.monotonic())

    def _fresh(self) -> dict[str, _Node]:
        now = time.monotonic()
        with self._lock:
            for name in [n for n, kept in self._nodes.items() if now - kept.scraped > self.stale_s]:
                del self._nodes[name]
            return dict(self._nodes)

    def forget_except(self, nodes: set[str]) -> None:
        """Nodes that are gone from the API are gone from the metrics."""
        with self._lock:
            for name in set(self._nodes) - nodes:
                del self._nodes[name]

    def node(self, name: str) -> Usage | None:
        kept = self._fresh().get(name)
        if kept is None or kept.before is None or kept.before.node is None or kept.after.node is None:
            return None
        return usage(kept.before.node, kept.after.node)

    def pods(self) -> dict[tuple[str, str], PodUsage]:
        """Every pod with a usage, by (namespace, name)."""
        found: dict[tuple[str, str], dict[str, Usage | None]] = {}
        where: dict[tuple[str, str], str] = {}
        for node, kept in self._fresh().items():
            before = kept.before.containers if kept.before is not None else {}
            for key, point in kept.after.containers.items():
                pod = (key.namespace, key.pod)
                where[pod] = node
                previous = before.get(key)
                found.setdefault(pod, {})[key.container] = None if previous is None else usage(previous, point)
        out = {}
        for pod, containers in found.items():
            complete = {name: u for name, u in containers.items() if u is not None}
            if complete and len(complete) == len(containers):
                out[pod] = PodUsage(pod[0], pod[1], where[pod], complete)
        return out


