"""``kubectl top`` of edge nodes and pods, end to end on the real parts: kubectl, kube-apiserver (its node proxy,
and its aggregation layer for metrics.k8s.io), the cloud stream server, the link, the node's stream end, podman
and the host's /proc."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.pki import CertificateAuthority
from tests.fixtures.processes import wait_until
from tests.integration.test_kubectl_logs import _stream_server_get, kubectl, start_pod
from tests.support.cluster import Cluster, node_names

MIB = 1024 * 1024
# 24 MiB in a tmpfs file: memory the container's cgroup is charged for, whatever the shell itself uses.
HOG = "head -c 25165824 /dev/zero > /dev/shm/hog; sleep 3600"
QUIET = "sleep 3600"


def raw(cluster: Cluster, path: str) -> str:
    return kubectl(cluster, "get", "--raw", path).stdout


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float, float | None]]]:
    """Every sample of a Prometheus text document by metric name, as prometheus_client's own parser reads it."""
    out: dict[str, list[tuple[dict[str, str], float, float | None]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stamp = None if sample.timestamp is None else float(sample.timestamp)
            out.setdefault(sample.name, []).append((sample.labels, sample.value, stamp))
    return out


def container_series(found: dict[str, list[tuple[dict[str, str], float, float | None]]], name: str,
                     pod: str) -> list[tuple[dict[str, str], float, float | None]]:
    return [s for s in found.get(name, []) if s[0].get("pod") == pod]


def test_resource_metrics_and_summary_of_an_edge_node_through_the_api_server(cluster_factory: Any) -> None:
    first, second = node_names(2)
    cluster: Cluster = cluster_factory([first, second])
    start_pod(cluster, "hog", first, HOG)
    start_pod(cluster, "elsewhere", second, QUIET)
    path = f"/api/v1/nodes/{first}/proxy/metrics/resource"

    def hog_counted() -> dict[str, list[tuple[dict[str, str], float, float | None]]] | None:
        found = samples(raw(cluster, path))
        memory = container_series(found, "container_memory_working_set_bytes", "hog")
        return found if memory and memory[0][1] >= 24 * MIB else None

    found = wait_until(hog_counted, timeout=30, interval=0.5, what="the hog's 24 MiB in its node's resource metrics")
    (node_cpu,) = found["node_cpu_usage_seconds_total"]
    (node_memory,) = found["node_memory_working_set_bytes"]
    assert node_cpu[0] == {}
    assert node_cpu[1] > 0
    assert node_cpu[2] is not None
    assert node_memory[1] > 64 * MIB
    (memory,) = container_series(found, "container_memory_working_set_bytes", "hog")
    assert memory[0] == {"container": "main", "namespace": cluster.namespace, "pod": "hog"}
    (cpu,) = container_series(found, "container_cpu_usage_seconds_total", "hog")
    assert cpu[1] > 0
    (pod_memory,) = container_series(found, "pod_memory_working_set_bytes", "hog")
    assert pod_memory[0] == {"namespace": cluster.namespace, "pod": "hog"}
    assert pod_memory[1] == memory[1]
    assert container_series(found, "container_start_time_seconds", "hog")
    assert found["scrape_error"] == [({}, 0.0, None)]
    # Only this node's pods: the pod on the second node is in the second node's metrics alone.
    assert all(labels.get("pod") != "elsewhere" for series in found.values() for labels, _, _ in series)
    other = samples(raw(cluster, f"/api/v1/nodes/{second}/proxy/metrics/resource"))
    assert [s[0]["pod"] for s in other["container_memory_working_set_bytes"]] == ["elsewhere"]

    def summary_with_rates() -> dict[str, Any] | None:
        summary: dict[str, Any] = json.loads(raw(cluster, f"/api/v1/nodes/{first}/proxy/stats/summary"))
        pods = summary["pods"]
        rated = "usageNanoCores" in summary["node"]["cpu"] and pods and "usageNanoCores" in pods[0]["cpu"]
        return summary if rated else None

    summary = wait_until(summary_with_rates, timeout=30, interval=1.0,
                         what="the summary's CPU rates (known from a second reading on)")
    node = summary["node"]
    assert node["nodeName"] == first
    assert node["cpu"]["usageNanoCores"] > 0
    assert node["cpu"]["usageCoreNanoSeconds"] > 0
    assert node["memory"]["workingSetBytes"] > 64 * MIB
    assert node["memory"]["availableBytes"] > 0
    (pod,) = summary["pods"]
    assert pod["podRef"]["name"] == "hog"
    assert pod["podRef"]["namespace"] == cluster.namespace
    assert pod["podRef"]["uid"] == cluster.pod("hog").metadata.uid
    (container,) = pod["containers"]
    assert container["name"] == "main"
    assert container["memory"]["workingSetBytes"] >= 24 * MIB
    assert pod["memory"]["workingSetBytes"] == container["memory"]["workingSetBytes"]


def test_metrics_of_a_node_whose_link_is_down_fail_with_a_clear_error(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    path = f"/api/v1/nodes/{node}/proxy/metrics/resource"
    assert "node_cpu_usage_seconds_total" in raw(cluster, path)
    _edge, link = cluster.nodes[node]
    link.down()
    down = f"node {node} is not connected: its link to the cloud is down"
    wait_until(lambda: down in kubectl(cluster, "get", "--raw", path, check=False).stderr, timeout=30,
               what="metrics refused while the link is down")
    link.up()
    wait_until(lambda: "node_cpu_usage_seconds_total" in kubectl(cluster, "get", "--raw", path, check=False).stdout,
               timeout=30, what="metrics again once the link is back")


def _quantity_bytes(text: str) -> float:
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * factor
    return float(text)


def _millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def top_rows(cluster: Cluster, *args: str) -> dict[str, list[str]]:
    """``kubectl top ... --no-headers`` by the first column; empty while kubectl says there are no metrics."""
    result = kubectl(cluster, "top", *args, "--no-headers", check=False)
    return {fields[0]: fields[1:] for line in result.stdout.splitlines() if (fields := line.split())}


def test_kubectl_top_node_and_pod(cluster_factory: Any) -> None:
    first, second = node_names(2)
    cluster: Cluster = cluster_factory([first, second])
    start_pod(cluster, "hog", first, HOG)
    start_pod(cluster, "elsewhere", second, QUIET)
    metricsapi = cluster.start_cloud("metricsapi")

    def both_nodes() -> dict[str, list[str]] | None:
        rows = top_rows(cluster, "node")
        return rows if first in rows and second in rows else None

    nodes = wait_until(both_nodes, timeout=60, interval=1.0, what="kubectl top node listing both edge nodes",
                       alive=metricsapi)
    cpu, _cpu_percent, memory, _memory_percent = nodes[first]
    available = kubectl(cluster, "get", "apiservice", "v1beta1.metrics.k8s.io", "-o",
                        'jsonpath={.status.conditions[?(@.type=="Available")].status}').stdout
    assert available == "True"
    assert _millicores(cpu) > 0, nodes
    assert _quantity_bytes(memory) > 64 * MIB, nodes

    def hog_row() -> list[str] | None:
        row = top_rows(cluster, "pod").get("hog")
        return row if row and _quantity_bytes(row[1]) >= 24 * MIB else None

    row = wait_until(hog_row, timeout=60, interval=1.0, what="kubectl top pod showing the hog's 24 MiB")
    assert row[0].endswith("m")
    pods = top_rows(cluster, "pod")
    assert set(pods) == {"hog", "elsewhere"}  # each from its own node's metrics
    containers = top_rows(cluster, "pod", "hog", "--containers")
    assert containers["hog"][0] == "main"
    assert _quantity_bytes(containers["hog"][2]) >= 24 * MIB

    # The metrics API's own objects, as metrics-server writes them.
    metrics = json.loads(raw(cluster, f"/apis/metrics.k8s.io/v1beta1/namespaces/{cluster.namespace}/pods/hog"))
    assert metrics["kind"] == "PodMetrics"
    assert metrics["metadata"]["namespace"] == cluster.namespace
    assert metrics["containers"][0]["name"] == "main"
    assert metrics["window"].endswith("s")
    missing = kubectl(cluster, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/no-such-node", check=False)
    assert missing.returncode != 0
    assert 'nodemetrics.metrics.k8s.io "no-such-node" not found' in missing.stderr
    # A label selector selects among the pods the API server has, by their labels there.
    kubectl(cluster, "label", "pod", "hog", "tier=hog")
    assert set(top_rows(cluster, "pod", "-l", "tier=hog")) == {"hog"}
    nothing = kubectl(cluster, "top", "pod", "-l", "tier=none", "--no-headers")
    assert nothing.stdout == ""


def test_the_metrics_api_asks_the_api_server_who_may_read(cluster_factory: Any) -> None:
    """The aggregation layer authenticates but does not authorize: the metrics API asks (SubjectAccessReview),
    so a user without RBAC on metrics.k8s.io is refused, while the admin reads."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "watched", node, QUIET)
    cluster.start_cloud("metricsapi")
    wait_until(lambda: "watched" in top_rows(cluster, "pod"), timeout=60, interval=1.0,
               what="kubectl top pod for the admin")
    refused = kubectl(cluster, "top", "pod", "--as", "nobody", check=False)
    assert refused.returncode != 0
    assert 'User "nobody" cannot list resource "pods" in API group "metrics.k8s.io"' in refused.stderr


def _metrics_api_get(cluster: Cluster, cert: tuple[bytes, bytes] | None,
                     headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET the metrics API's discovery straight at its Endpoints address, with ``cert`` (key, certificate)."""
    endpoints = cluster.core.read_namespaced_endpoints("edgehive-metrics", "kube-system")
    address, port = endpoints.subsets[0].addresses[0].ip, endpoints.subsets[0].ports[0].port
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the client's side is under test here, not the server's
    if cert is not None:
        key_file, cert_file = cluster.workdir / "client.key", cluster.workdir / "client.crt"
        key_file.write_bytes(cert[0])
        cert_file.write_bytes(cert[1])
        context.load_cert_chain(str(cert_file), str(key_file))
    request = urllib.request.Request(f"https://{address}:{port}/apis/metrics.k8s.io/v1beta1", headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_only_the_front_proxy_reaches_the_metrics_api_and_only_the_proxy_names_a_node(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    metricsapi = cluster.start_cloud("metricsapi")
    wait_until(lambda: kubectl(cluster, "get", "--raw", "/apis/metrics.k8s.io/v1beta1", check=False).returncode == 0,
               timeout=30, interval=0.5, what="the metrics API registered and available", alive=metricsapi)
    pki = cluster.api.ca_file.parent
    front_proxy = ((pki / "front-proxy-client.key").read_bytes(), (pki / "front-proxy-client.crt").read_bytes())
    ok, body = _metrics_api_get(cluster, front_proxy, {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert ok == 200
    assert json.loads(body)["groupVersion"] == "metrics.k8s.io/v1beta1"
    # The front proxy's certificate without a user named: nobody to authorize.
    assert _metrics_api_get(cluster, front_proxy)[0] == 401
    # A certificate of the cluster's main CA, even with the front proxy's name, is not the front proxy's.
    ca = CertificateAuthority((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _metrics_api_get(cluster, ca.issue("front-proxy-client", client=True), {"X-Remote-User": "admin"})
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _metrics_api_get(cluster, None, {"X-Remote-User": "admin"})

    # The stream server serves a node's metrics only when the API server's node proxy names the node.
    kubelet_client = ((pki / "kubelet-client.key").read_bytes(), (pki / "kubelet-client.crt").read_bytes())
    code, text = _stream_server_get(cluster, "/metrics/resource", kubelet_client)
    assert code == 400
    assert "names no node" in text
