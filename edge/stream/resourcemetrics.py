"""The kubelet's ``/metrics/resource`` in Prometheus text format (0.0.4), from a Snapshot.

The metric names, help texts, types and labels are the kubelet's (its resource metrics endpoint, which
metrics-server reads): ``node_*`` without labels, ``container_*`` with ``container``, ``pod`` and
``namespace``, ``pod_*`` with ``pod`` and ``namespace``, and ``scrape_error``. Each sample carries the
time of its reading in milliseconds, as the kubelet's do, so that a reader computes rates over the
readings' own interval and not over its scrapes'.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.stream.metricssnapshot import ContainerSample, Snapshot

_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "scrape_error": ("gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    return repr(float(value))


def render(snapshot: Snapshot) -> bytes:
    series: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: Iterable[tuple[str, str]], value: float, at: float | None) -> None:
        stamp = "" if at is None else f" {int(at * 1000)}"
        series[name].append(f"{name}{_labels(labels)} {_number(value)}{stamp}")

    for c in sorted(snapshot.containers, key=lambda c: (c.namespace, c.pod, c.container)):
        labels: tuple[tuple[str, str], ...] = (("container", c.container), ("namespace", c.namespace), ("pod", c.pod))
        add("container_cpu_usage_seconds_total", labels, c.cpu_ns / 1e9, c.at)
        add("container_memory_working_set_bytes", labels, c.working_set, c.at)
        add("container_start_time_seconds", labels, c.started, c.started)
    node = snapshot.node
    if node is not None:
        add("node_cpu_usage_seconds_total", (), node.cpu_ns / 1e9, node.at)
        add("node_memory_working_set_bytes", (), node.working_set, node.at)
    for (namespace, pod), containers in snapshot.pods().items():
        labels = (("namespace", namespace), ("pod", pod))
        at = _latest(containers)
        add("pod_cpu_usage_seconds_total", labels, sum(c.cpu_ns for c in containers) / 1e9, at)
        add("pod_memory_working_set_bytes", labels, sum(c.working_set for c in containers), at)
    add("scrape_error", (), 1 if snapshot.errors else 0, None)
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        if series[name]:
            lines += [f"# HELP {name} [ALPHA] {text}", f"# TYPE {name} {kind}", *series[name]]
    return ("\n".join(lines) + "\n").encode()


def _latest(containers: list[ContainerSample]) -> float:
    return max(c.at for c in containers)
