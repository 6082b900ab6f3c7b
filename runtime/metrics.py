"""Prometheus metrics for a component: its counters, its own report, SQLite commit times.

Nothing here counts anything new: the bus already counts every event (messages in and out
by topic class, invalid input by field, handler errors, reconnects), and components
report their state (CloudHub: every node's link and queue). This module shows both to
Prometheus when ``--metrics-listen`` is set, reading them at scrape time, so a component
pays nothing for metrics nobody asks for.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from runtime.address import Address
from runtime.counters import Counters

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Timings:
    """A histogram of durations, kept without prometheus_client (its import costs every process ~80 ms
    at start, and most run without metrics); exported as a Prometheus histogram at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.total += seconds

    @contextmanager
    def time(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        with self._lock:
            counts, total = list(self.counts), self.total
        out, running = [], 0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out, total


SQLITE_COMMIT_SECONDS = Timings()
"""Time to commit one batch to SQLite (WAL, synchronous=FULL), in the process's component."""

ERRORS = ("invalid", "handler_errors", "error_replies", "request_timeouts", "publish_timeouts", "unhandled",
          "wrong_node", "bad_device_topic", "batch_errors", "connect_failures", "connect_refused",
          "subscribe_refused", "dropped_qos0", "dropped_offline", "outbox_evicted", "refused", "bad_link_topic",
          "outbox_events_dropped", "events_dropped")
"""``refused``: a valid envelope (or device request) the component turned down with an error answer.
``outbox_events_dropped``: Kubernetes Events EdgeHub's outbox dropped past its cap (the oldest Normal first);
``events_dropped``: Events EdgeD could not hand to EdgeHub."""


REFUSED_FIELD = "refused_field:"
"""EdgeD's counter of the pods it failed for a PodSpec field (``refused_field:spec.hostUsers``)."""


class ComponentCollector:
    def __init__(self, component: str, node: str, counters: Counters,
                 report: Callable[[], dict[str, Any]] | None = None) -> None:
        self.component = component
        self.node = node
        self.counters = counters
        self.report = report

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415 (only processes that serve metrics pay for it)
            CounterMetricFamily,
            HistogramMetricFamily,
        )

        labels = ["component", "node"]
        base = [self.component, self.node]
        counts = self.counters.snapshot()
        received = CounterMetricFamily("edgehive_messages_received", "Messages received, by topic class",
                                       labels=[*labels, "topic_class"])
        sent = CounterMetricFamily("edgehive_messages_sent", "Messages published, by topic class",
                                   labels=[*labels, "topic_class"])
        errors = CounterMetricFamily("edgehive_errors", "Refused input and failures, by reason",
                                     labels=[*labels, "reason"])
        events = CounterMetricFamily("edgehive_events", "Every other counted event", labels=[*labels, "event"])
        fields = CounterMetricFamily("edgehive_pod_fields_refused", "Pods failed for a field this node does not "
                                     "honour, by field", labels=[*labels, "field"])
        for name, value in sorted(counts.items()):
            if name.startswith(REFUSED_FIELD):
                fields.add_metric([*base, name[len(REFUSED_FIELD):]], value)
            elif name.startswith("in:"):
                received.add_metric([*base, name[3:]], value)
            elif name.startswith("out:"):
                sent.add_metric([*base, name[4:]], value)
            elif name in ERRORS or name.startswith("invalid_"):
                errors.add_metric([*base, name], value)
            else:
                events.add_metric([*base, name], value)
        yield from (received, sent, errors, events, fields)
        reconnects = CounterMetricFamily("edgehive_broker_reconnects", "Connections to the broker after the first",
                                         labels=labels)
        reconnects.add_metric(base, max(0, counts.get("connects", 0) - 1))
        yield reconnects
        buckets, total = SQLITE_COMMIT_SECONDS.cumulative()
        if buckets[-1][1]:
            commits = HistogramMetricFamily("edgehive_sqlite_commit_seconds", "Time to commit one batch to SQLite",
                                            labels=labels)
            commits.add_metric(base, buckets, total)
            yield commits
        if self.report is not None:
            yield from self._report_gauges(self.report())

    def _report_gauges(self, report: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 (as above)

        nodes = report.get("nodes")
        if isinstance(nodes, dict):  # CloudHub: every node's link
            families = {
                "connected": GaugeMetricFamily("edgehive_node_link_up", "1 while the node's link is up",
                                               labels=["node"]),
                "queued": GaugeMetricFamily("edgehive_node_queue_depth", "Objects waiting for the node",
                                            labels=["node"]),
                "inflight": GaugeMetricFamily("edgehive_node_inflight", "Objects sent, not yet acknowledged",
                                              labels=["node"]),
                "outbox": GaugeMetricFamily("edgehive_node_outbox", "Entries in the node's outbox (its last keepalive)",
                                            labels=["node"]),
            }
            for name, link in sorted(nodes.items()):
                for key, family in families.items():
                    value = link.get(key)
                    if isinstance(value, bool | int | float):
                        family.add_metric([name], float(value))
            yield from families.values()
        if isinstance(report.get("outbox_size"), int):  # EdgeHub
            gauge = GaugeMetricFamily("edgehive_outbox_size", "Entries in this node's outbox", labels=["node"])
            gauge.add_metric([self.node], report["outbox_size"])
            yield gauge
        if isinstance(report.get("link_up"), bool):  # EdgeHub: the link as the node sees it, whatever bridge
            link = GaugeMetricFamily("edgehive_link_up", "1 while this node's link to the cloud is up",
                                     labels=["node"])
            link.add_metric([self.node], float(report["link_up"]))
            yield link


def parse_listen(listen: str) -> Address:
    """``--metrics-listen``: ``HOST:PORT``, an empty host being every address."""
    return Address.parse(listen, any_host=True, what="--metrics-listen")


def serve(listen: str, collector: Any) -> None:
    """Expose /metrics on ``listen`` (HOST:PORT), with the process's own CPU and memory metrics.

    ``collector`` is any object with ``collect()`` yielding metric families (prometheus_client's protocol).
    """
    address = parse_listen(listen)
    from prometheus_client import REGISTRY, start_http_server  # noqa: PLC0415 (as above)

    REGISTRY.register(collector)  # a collector by duck typing
    start_http_server(address.port, addr=address.bind_host)
