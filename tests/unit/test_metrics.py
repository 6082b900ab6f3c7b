"""The metrics a component exposes, from its counters and its report (no process, no network)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from runtime.counters import Counters
from runtime.metrics import ComponentCollector, Timings


def test_counters_and_cloudhub_report_become_metrics() -> None:
    counters = Counters()
    for name, n in (("in:link", 5), ("out:link", 4), ("invalid_body", 2), ("connects", 3), ("downstream_acked", 7)):
        counters.inc(name, n)
    report = {"nodes": {"shop-1": {"connected": True, "queued": 12, "inflight": 3, "outbox": 40},
                        "shop-2": {"connected": False, "queued": 0, "inflight": 0, "outbox": None}}}
    registry = CollectorRegistry()
    registry.register(ComponentCollector("cloudhub", "cloud", counters, lambda: report))
    text = generate_latest(registry).decode()
    base = 'component="cloudhub",node="cloud"'
    assert f'edgehive_messages_received_total{{{base},topic_class="link"}} 5.0' in text
    assert f'edgehive_messages_sent_total{{{base},topic_class="link"}} 4.0' in text
    assert f'edgehive_errors_total{{{base},reason="invalid_body"}} 2.0' in text
    assert 'edgehive_events_total{component="cloudhub",event="downstream_acked",node="cloud"} 7.0' in text
    assert f"edgehive_broker_reconnects_total{{{base}}} 2.0" in text
    assert 'edgehive_node_link_up{node="shop-1"} 1.0' in text
    assert 'edgehive_node_link_up{node="shop-2"} 0.0' in text
    assert 'edgehive_node_queue_depth{node="shop-1"} 12.0' in text
    assert 'edgehive_node_outbox{node="shop-1"} 40.0' in text
    assert 'edgehive_node_outbox{node="shop-2"}' not in text  # unknown is absent, not zero


def test_timings_are_cumulative_buckets() -> None:
    timings = Timings()
    for seconds in (0.0004, 0.003, 0.003, 2.0, 9.0):
        timings.observe(seconds)
    buckets, total = timings.cumulative()
    as_dict = dict(buckets)
    assert as_dict["0.0005"] == 1.0
    assert as_dict["0.005"] == 3.0
    assert as_dict["2.5"] == 4.0
    assert as_dict["+Inf"] == 5.0
    assert abs(total - 11.0064) < 1e-9


def test_edgehubs_link_becomes_metrics_whatever_carries_it() -> None:
    """EdgeHub's view of its link: with mosquitto's own bridge there is no bridge process to serve metrics."""
    counters = Counters()
    counters.inc("link_connects", 2)
    counters.inc("link_drops")
    registry = CollectorRegistry()
    registry.register(ComponentCollector("edgehub", "edge-1", counters,
                                         lambda: {"outbox_size": 3, "outbox_events": 0, "link_up": True}))
    text = generate_latest(registry).decode()
    assert 'edgehive_link_up{node="edge-1"} 1.0' in text
    assert 'edgehive_outbox_size{node="edge-1"} 3.0' in text
    assert 'edgehive_events_total{component="edgehub",event="link_connects",node="edge-1"} 2.0' in text
    assert 'edgehive_events_total{component="edgehub",event="link_drops",node="edge-1"} 1.0' in text
