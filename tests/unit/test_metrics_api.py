"""The metrics API, one function at a time: a kubelet's text read into types, rates from two scrapes, the routes,
the front proxy's user, and the objects kubectl top reads."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest

from cloud.kube import KubeError
from cloud.metricsapi import objects
from cloud.metricsapi.frontproxy import FrontProxy, FrontProxyError
from cloud.metricsapi.routes import Route, route
from cloud.metricsapi.store import MetricsStore, usage
from schemas.kubeletmetrics import ContainerKey, MetricsTextError, Point, parse


def scrape_text(at_ms: int, cpu: float, memory: int, started: float = 1700000000.0) -> str:
    return (
        "# TYPE node_cpu_usage_seconds_total counter\n"
        f"node_cpu_usage_seconds_total {cpu * 4} {at_ms}\n"
        f"node_memory_working_set_bytes {memory * 10} {at_ms}\n"
        f'container_cpu_usage_seconds_total{{container="main",namespace="ns",pod="web"}} {cpu} {at_ms}\n'
        f'container_memory_working_set_bytes{{container="main",namespace="ns",pod="web"}} {memory} {at_ms}\n'
        f'container_start_time_seconds{{container="main",namespace="ns",pod="web"}} {started} {int(started * 1000)}\n'
        f'container_cpu_usage_seconds_total{{container="side",namespace="ns",pod="web"}} {cpu} {at_ms}\n'
        f'container_memory_working_set_bytes{{container="side",namespace="ns",pod="web"}} 1024 {at_ms}\n'
        "scrape_error 0\n")


def test_a_kubelets_text_read_into_types() -> None:
    scrape = parse(scrape_text(1700000010000, 2.0, 4096), scraped_at=0.0)
    assert scrape.node == Point(1700000010.0, 8.0, 40960.0)
    main = scrape.containers[ContainerKey("ns", "web", "main")]
    assert (main.cpu_s, main.memory, main.started) == (2.0, 4096.0, 1700000000.0)
    assert not scrape.scrape_error
    with pytest.raises(MetricsTextError, match="no pod label"):
        parse('container_cpu_usage_seconds_total{container="a",namespace="b"} 1\n', 0.0)
    untimed = parse("node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 2\nscrape_error 1\n", 42.0)
    assert untimed.node == Point(42.0, 1.0, 2.0)
    assert untimed.scrape_error


def test_rates_from_two_scrapes_and_whole_pods_only() -> None:
    store = MetricsStore(stale_s=60)
    store.record("edge-1", parse(scrape_text(1700000010000, 2.0, 4096), 0.0))
    assert store.node("edge-1") is None  # one reading: no rate yet
    assert store.pods() == {}
    store.record("edge-1", parse(scrape_text(1700000020000, 7.0, 8192), 0.0))
    node = store.node("edge-1")
    assert node is not None
    assert (node.cpu_nanocores, node.memory_bytes, node.window_s) == (2_000_000_000, 81920, 10.0)
    pod = store.pods()[("ns", "web")]
    assert pod.node == "edge-1"
    assert pod.containers["main"].cpu_nanocores == 500_000_000
    assert pod.containers["main"].memory_bytes == 8192
    # A restarted container has no rate: its pod is left out rather than shown in part.
    store.record("edge-1", parse(scrape_text(1700000030000, 8.0, 8192, started=1700000025.0), 0.0))
    assert ("ns", "web") not in store.pods()
    store.forget_except(set())
    assert store.node("edge-1") is None


def test_usage_refuses_a_counter_that_went_back() -> None:
    assert usage(Point(10.0, 5.0, 1.0), Point(20.0, 4.0, 1.0)) is None
    assert usage(Point(10.0, 5.0, 1.0), Point(10.0, 6.0, 1.0)) is None


@pytest.mark.parametrize(("path", "expected"), [
    ("/apis/metrics.k8s.io/v1beta1", Route("")),
    ("/apis/metrics.k8s.io/v1beta1/nodes", Route("nodes")),
    ("/apis/metrics.k8s.io/v1beta1/nodes/edge-1", Route("nodes", name="edge-1")),
    ("/apis/metrics.k8s.io/v1beta1/pods", Route("pods")),
    ("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods", Route("pods", "ns")),
    ("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/web", Route("pods", "ns", "web")),
    ("/apis/metrics.k8s.io/v1beta1/namespaces/ns", None),
    ("/apis/metrics.k8s.io/v1beta2/nodes", None),
])
def test_routes(path: str, expected: Route | None) -> None:
    assert route(path) == expected


def test_the_front_proxy_names_the_user_only_with_an_allowed_certificate() -> None:
    proxy = FrontProxy.from_configmap({
        "requestheader-client-ca-file": "PEM", "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]', "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'})
    headers = Message()
    headers["X-Remote-User"] = "alice"
    headers["X-Remote-Group"] = "dev"
    headers["X-Remote-Group"] = "system:authenticated"
    headers["X-Remote-Extra-Scopes"] = "a"
    user = proxy.identify("front-proxy-client", headers)
    assert user is not None
    assert (user.name, user.groups, user.extra) == ("alice", ("dev", "system:authenticated"), {"scopes": ["a"]})
    assert proxy.identify("someone-else", headers) is None
    assert proxy.identify("front-proxy-client", Message()) is None
    with pytest.raises(FrontProxyError, match="requestheader-client-ca-file"):
        FrontProxy.from_configmap({})


class _Answers:
    """The API server's answers to the ConfigMap's GETs, in turn (a stand-in for Kube.request_json)."""

    def __init__(self, *answers: dict[str, Any] | KubeError) -> None:
        self.answers = list(answers)

    def request_json(self, method: str, path: str) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        return answer


def test_the_front_proxy_waits_for_a_starting_api_server_to_publish_its_configmap() -> None:
    missing = KubeError(404, 'configmaps "extension-apiserver-authentication" not found')
    kube = _Answers(missing, missing, {"data": {"requestheader-client-ca-file": "PEM"}})
    assert FrontProxy.read(kube, wait_s=5).ca_pem == "PEM"  # type: ignore[arg-type]
    assert kube.answers == []
    with pytest.raises(KubeError, match="404"):  # not forever
        FrontProxy.read(_Answers(missing, missing), wait_s=0)  # type: ignore[arg-type]
    with pytest.raises(KubeError, match="403"):  # any other refusal at once
        FrontProxy.read(_Answers(KubeError(403, "forbidden")), wait_s=5)  # type: ignore[arg-type]


def test_quantities_as_metrics_server_writes_them() -> None:
    assert objects.quantity_cpu(1234) == "1234n"
    assert objects.quantity_memory(25165824) == "24576Ki"
    assert objects.quantity_memory(1000) == "1000"
