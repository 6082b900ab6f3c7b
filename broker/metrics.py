"""Prometheus metrics of what serves MQTT: a node's bridge and the brokers (served with ``runtime.metrics.serve``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class BridgeCollector:
    """A node's bridge: its connections (resource and stream traffic, to each broker), what it forwarded each way
    and what waits in its queues.

    ``report`` is ``Bridge.report``: ``{"connected": {side: bool}, "connects": {side: n},
    "connect_failures": {side: n}, "forwarded": {direction: n}, "pending": {direction: n}}``.
    """

    def __init__(self, node: str, report: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.node = node
        self.report = report

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415 (as above)

        report = self.report()
        families = (
            ("connected", GaugeMetricFamily, "edgehive_bridge_connected", "1 while the bridge is connected", "side"),
            ("reconnects", CounterMetricFamily, "edgehive_bridge_reconnects", "Connections after the first", "side"),
            ("connect_failures", CounterMetricFamily, "edgehive_bridge_connect_failures",
             "Attempts to connect that failed", "side"),
            ("forwarded", CounterMetricFamily, "edgehive_bridge_forwarded", "Messages passed on, acknowledged",
             "direction"),
            ("pending", GaugeMetricFamily, "edgehive_bridge_pending", "Messages taken, not yet passed on",
             "direction"),
        )
        for key, family_type, name, help_text, label in families:
            family = family_type(name, help_text, labels=["node", label])
            for value_label, value in sorted(report.get(key, {}).items()):
                family.add_metric([self.node, value_label], float(value))
            yield family


BROKER_METRICS = {
    # key in a broker's stats: (Prometheus type, name, help)
    "clients_connected": ("gauge", "edgehive_broker_clients_connected", "Clients connected now"),
    "sessions": ("gauge", "edgehive_broker_sessions", "Sessions kept, connected or not"),
    "retained": ("gauge", "edgehive_broker_retained_messages", "Retained messages"),
    "stored": ("gauge", "edgehive_broker_stored_messages", "Messages held: retained and queued for clients"),
    "queued_offline": ("gauge", "edgehive_broker_queued_offline", "Messages queued for disconnected clients"),
    "messages_received": ("counter", "edgehive_broker_messages_received", "PUBLISH packets received"),
    "messages_sent": ("counter", "edgehive_broker_messages_sent", "PUBLISH packets sent"),
    "publish_dropped": ("counter", "edgehive_broker_publish_dropped", "Messages dropped (queue limits)"),
    "connections_refused": ("counter", "edgehive_broker_connections_refused",
                            "Clients refused: no identity, a wrong password or a revoked certificate"),
    "restarts": ("counter", "edgehive_broker_restarts", "Broker restarts by its supervisor (a CRL change)"),
}


class BrokerCollector:
    """A broker's own figures (amqtt: read from the broker; mosquitto: its $SYS topics), by kind."""

    def __init__(self, kind: str, stats: Callable[[], dict[str, float]]) -> None:
        self.kind = kind
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415 (as above)

        stats = self.stats()
        for key, (kind, name, help_text) in BROKER_METRICS.items():
            if key in stats:
                family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, help_text,
                                                                                         labels=["broker"])
                family.add_metric([self.kind], float(stats[key]))
                yield family
