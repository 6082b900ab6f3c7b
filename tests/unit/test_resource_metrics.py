"""The node's resource metrics, one function at a time: the node named by the API server's node proxy, the
node's figures from a /proc, the kubelet's Prometheus text and the CPU rates."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from edge.stream import resourcemetrics
from edge.stream.metricssnapshot import ContainerSample, Rates, Snapshot
from edge.stream.nodestats import USER_HZ, NodeStatsError, read_node
from schemas.fields import BodyError
from schemas.metricsrequest import MetricsKind, MetricsRequest, metrics_kind, proxied_node
from schemas.streamrequest import RequestRefused

STAT = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n"
MEMINFO = "MemTotal: 1000 kB\nMemFree: 300 kB\nInactive(file): 200 kB\nAnonPages: 150 kB\n"


@pytest.mark.parametrize(("uri", "node"), [
    ("/api/v1/nodes/edge-1/proxy/metrics/resource", "edge-1"),
    ("/api/v1/nodes/edge-1:10250/proxy/stats/summary", "edge-1"),
    ("/api/v1/nodes/https:edge-1:10250/proxy/metrics/resource", "edge-1"),
    ("/api/v1/nodes/https:edge-1/proxy/metrics/resource", "edge-1"),
])
def test_the_node_is_the_one_the_node_proxy_names(uri: str, node: str) -> None:
    assert proxied_node(uri) == node


@pytest.mark.parametrize("uri", [None, "", "/metrics/resource", "/api/v1/nodes/Bad_Name/proxy/metrics/resource"])
def test_a_request_that_names_no_node_is_refused(uri: str | None) -> None:
    with pytest.raises(RequestRefused) as refused:
        proxied_node(uri)
    assert refused.value.code == 400


def test_metrics_paths_and_requests() -> None:
    assert metrics_kind("/metrics/resource") == MetricsKind.RESOURCE
    assert metrics_kind("/stats/summary/") == MetricsKind.SUMMARY
    assert metrics_kind("/containerLogs/a/b/c") is None
    assert metrics_kind("/metrics") is None
    request = MetricsRequest(MetricsKind.SUMMARY)
    assert MetricsRequest.parse(request.as_map()) == request
    with pytest.raises(BodyError, match=r"req\.kind"):
        MetricsRequest.parse({"op": "metrics", "kind": "cadvisor"})


def test_node_figures_from_proc(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "meminfo").write_text(MEMINFO)
    sample = read_node(tmp_path)
    busy_ticks = 100 + 20 + 30 + 6 + 7 + 8  # idle (4000) and iowait (50) are not busy
    assert sample.cpu_ns == busy_ticks * (1_000_000_000 // USER_HZ)
    assert (sample.memory_usage, sample.working_set, sample.rss) == (700 * 1024, 500 * 1024, 150 * 1024)
    assert sample.available == 500 * 1024
    assert sample.boot_time == 1700000000
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\n")
    with pytest.raises(NodeStatsError, match="MemFree"):
        read_node(tmp_path)


def test_prometheus_text_with_the_kubelets_names(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "meminfo").write_text(MEMINFO)
    containers = [ContainerSample("a" * 64, "ns", 'we"ird', "uid-1", "main", 1700000100.0, 1700000200.5,
                                  2_500_000_000, 4096),
                  ContainerSample("b" * 64, "ns", 'we"ird', "uid-1", "side", 1700000100.0, 1700000200.5,
                                  500_000_000, 1024)]
    text = resourcemetrics.render(Snapshot(read_node(tmp_path), containers)).decode()
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    assert set(found) == {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                          "container_start_time_seconds", "node_cpu_usage_seconds_total",
                          "node_memory_working_set_bytes", "pod_cpu_usage_seconds_total",
                          "pod_memory_working_set_bytes", "scrape_error"}
    main = found["container_cpu_usage_seconds_total"][0]
    assert main.labels == {"container": "main", "namespace": "ns", "pod": 'we"ird'}
    assert main.value == 2.5
    assert main.timestamp == pytest.approx(1700000200.5)
    (pod_cpu,) = found["pod_cpu_usage_seconds_total"]
    assert pod_cpu.labels == {"namespace": "ns", "pod": 'we"ird'}
    assert pod_cpu.value == 3.0
    assert found["pod_memory_working_set_bytes"][0].value == 5120
    assert found["scrape_error"][0].value == 0
    failed = resourcemetrics.render(Snapshot(None, [], ["podman is not answering"])).decode()
    assert "scrape_error 1.0" in failed
    assert "node_cpu_usage_seconds_total" not in failed


def test_rates_need_two_readings_a_second_apart() -> None:
    rates = Rates()
    assert rates.observe("c", 100.0, 1_000_000_000) is None
    assert rates.observe("c", 100.2, 1_100_000_000) is None  # too close: no rate yet
    assert rates.observe("c", 102.0, 2_000_000_000) == 500_000_000  # half a core
    assert rates.observe("c", 102.5, 2_100_000_000) == 500_000_000  # too close: the last rate
    assert rates.observe("c", 103.0, 10) is None  # a counter that went back is a new container
    rates.forget_except(set())
    assert rates.observe("c", 104.0, 20) is None
