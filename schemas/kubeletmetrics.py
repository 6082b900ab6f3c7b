"""A kubelet's ``/metrics/resource`` read into types, once, where it enters the metrics API.

Only the series metrics-server reads: the node's and each container's cumulative CPU seconds and working
set, the containers' start times (a restarted container's counter starts again) and ``scrape_error``. A
sample without a timestamp gets the time of the scrape, as metrics-server does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from schemas.errors import WireFormatError


class MetricsTextError(WireFormatError):
    """The text is not Prometheus text, or a series lacks a label the kubelet always sets."""


@dataclass(frozen=True, slots=True)
class Point:
    at: float  # seconds since the epoch, the reading's own time
    cpu_s: float  # cumulative CPU core-seconds
    memory: float  # working set, bytes
    started: float = 0.0  # containers: start time, seconds since the epoch


@dataclass(frozen=True, slots=True)
class ContainerKey:
    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class NodeScrape:
    node: Point | None
    containers: dict[ContainerKey, Point] = field(default_factory=dict)
    scrape_error: bool = False


_NODE = ("node_cpu_usage_seconds_total", "node_memory_working_set_bytes")
_CONTAINER = ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
              "container_start_time_seconds")


def parse(text: str, scraped_at: float) -> NodeScrape:
    node: dict[str, tuple[float, float]] = {}
    containers: dict[ContainerKey, dict[str, tuple[float, float]]] = {}
    error = False
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                at = scraped_at if sample.timestamp is None else float(sample.timestamp)
                if sample.name in _NODE:
                    node[sample.name] = (sample.value, at)
                elif sample.name in _CONTAINER:
                    try:
                        key = ContainerKey(sample.labels["namespace"], sample.labels["pod"],
                                           sample.labels["container"])
                    except KeyError as exc:
                        raise MetricsTextError(f"{sample.name} has no {exc.args[0]} label") from None
                    containers.setdefault(key, {})[sample.name] = (sample.value, at)
                elif sample.name == "scrape_error":
                    error = sample.value != 0
    except ValueError as exc:
        raise MetricsTextError(f"not Prometheus text: {exc}") from exc
    node_point = None
    if len(node) == len(_NODE):
        cpu, memory = node[_NODE[0]], node[_NODE[1]]
        node_point = Point(cpu[1], cpu[0], memory[0])
    points = {}
    for key, series in containers.items():
        if _CONTAINER[0] in series and _CONTAINER[1] in series:
            cpu, memory = series[_CONTAINER[0]], series[_CONTAINER[1]]
            points[key] = Point(cpu[1], cpu[0], memory[0], series.get(_CONTAINER[2], (0.0, 0.0))[0])
    return NodeScrape(node_point, points, error)
