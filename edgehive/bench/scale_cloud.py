"""The cloud under test in ``bench scale``, and the bench as a client of its API server (like kubectl).

Real, each its own process as in production: etcd and kube-apiserver (edgehive.localcluster), the cloud
broker (anonymous here: per-node users would add 1,000 password hashes to its start and nothing to what is
measured; the link ACL has its own tests), CloudHub and EdgeController. DeviceController does not run: the
question is what CloudHub and EdgeController cost per node.
"""

from __future__ import annotations

import json
import os
import random
import re
import ssl
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.embedded import BrokerSettings
from broker.launch import BrokerMissing, broker_argv, wait_ready
from cloud.kube import Kube
from edgehive.bench.harness import (
    BenchError,
    bench_apiserver,
    bench_workdir,
    free_port,
    process,
    wait_status,
    wait_until,
)
from edgehive.bench.procfs import Memory, read_memory
from edgehive.bench.simnode import NAMESPACE, configmap_key
from edgehive.localcluster import LocalApiServer, LocalClusterError
from runtime.url import BrokerUrl

RAW_NAMESPACE = "scale-raw"
IMAGE = "localhost/busybox:latest"
CLOUD = ("cloudhub", "edgecontroller")
STATUS_WRITE = "PATCH nodes/status"  # how EdgeController writes a node status
LEASE_RENEWAL = "PUT leases"  # how EdgeController renews a node Lease (cloud/edgecontroller/lease.py)
LATENCY_RATE = 50  # ConfigMap updates per second while their latency to the nodes is measured
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_counts(metrics: str) -> Counter[str]:
    """Requests the API server has served so far, as 'VERB resource[/subresource]', from its own
    ``apiserver_request_total`` (what EdgeController really wrote, whatever it was asked to)."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(labels_text))
        name = f"{labels.get('verb', '?')} {labels.get('resource', '?')}"
        if labels.get("subresource"):
            name += f"/{labels['subresource']}"
        counts[name] += int(float(value))
    return counts



def api_requests(local: LocalApiServer) -> Counter[str]:
    """The API server's request counters (its /metrics, read with the admin token)."""
    context = ssl.create_default_context(cafile=str(local.pki / "ca.crt"))
    request = urllib.request.Request(f"{local.url}/metrics", headers={"Authorization": f"Bearer {local.token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return request_counts(response.read().decode())
    except OSError as exc:
        raise BenchError(f"bench scale: cannot read the API server's metrics: {exc}") from exc


def per_s(before: Counter[str], after: Counter[str], seconds: float, least: float = 0.5) -> dict[str, float]:
    """Requests per second by kind between two readings, the busiest first, those under ``least``/s left out."""
    rates = {k: round((after[k] - before[k]) / seconds, 1) for k in after}
    return {k: v for k, v in sorted(rates.items(), key=lambda kv: -kv[1]) if v >= least}



@dataclass
class Cloud:
    work: Path
    kube: Kube
    local: LocalApiServer
    url: BrokerUrl
    pids: dict[str, list[int]]

    def requests(self) -> Counter[str]:
        return api_requests(self.local)


    def memory(self) -> dict[str, Memory]:
        """CloudHub's, EdgeController's and (apart, not counted as the cloud's) the broker's."""
        return {name: read_memory(self.pids[name][0]) for name in (*CLOUD, "broker")}


def start_cloud(stack: ExitStack, broker: str, say: Callable[[str], None]) -> Cloud:
    work = bench_workdir(stack, "ehscale-")
    say(f"working in {work}; starting etcd, kube-apiserver, the {broker} cloud broker, CloudHub, EdgeController")
    local = bench_apiserver(stack, work)
    try:
        local.prepare()
        broker_dir = work / "broker"
        broker_dir.mkdir()
        port = free_port()
        argv = broker_argv(broker, BrokerSettings(listen=(f"127.0.0.1:{port}",)), broker_dir)
    except (LocalClusterError, BrokerMissing) as exc:
        raise BenchError(f"bench scale: {exc}") from exc
    pids = {"etcd": [stack.enter_context(process(local.etcd_argv(), work / "etcd.log")).pid],
            "apiserver": [stack.enter_context(process(local.apiserver_argv(), work / "apiserver.log")).pid],
            "broker": [stack.enter_context(process(argv, work / "broker.log")).pid]}
    url = BrokerUrl("127.0.0.1", port)
    wait_until(local.ready, 60, f"the API server (see {work}/apiserver.log)")
    if not wait_ready(url, 20):
        raise BenchError(f"bench scale: the {broker} broker did not start; see {work}/broker.log")
    env = {**os.environ, "EDGEHIVE_BROKER": str(url)}
    for component in CLOUD:
        extra = ["--kubeconfig", str(local.kubeconfig)] if component == "edgecontroller" else []
        proc = stack.enter_context(process([sys.executable, "-m", f"cloud.{component}", *extra],
                                            work / f"{component}.log", env))
        pids[component] = [proc.pid]
    wait_status(url, CLOUD)
    kube = Kube.connect(str(local.kubeconfig))
    stack.callback(kube.close)
    for namespace in (NAMESPACE, RAW_NAMESPACE):
        kube.ensure_namespace(namespace)
    return Cloud(work, kube, local, url, pids)



def unknown_nodes(core: Any) -> int:
    """Nodes whose NodeReady EdgeController set to Unknown (their link is down)."""
    listing = api(core.list_node, label_selector="node-role.kubernetes.io/edge")
    count = 0
    for node in listing.get("items") or []:
        for condition in (node.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Ready" and condition.get("status") == "Unknown":
                count += 1
    return count



def api(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    response = call(*args, _preload_content=False, **kwargs)
    data: dict[str, Any] = json.loads(response.data or b"{}")
    return data


def pod_manifest(name: str, node: str | None, configmap: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if node is not None:
        spec["nodeName"] = node
    if configmap is not None:
        container["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
        spec["volumes"] = [{"name": "cfg", "configMap": {"name": configmap}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "scale"}}, "spec": spec}


def set_configmap(core: Any, node: str, value: str) -> int:
    """Change a node's ConfigMap; its new resourceVersion."""
    obj = api(core.patch_namespaced_config_map, f"cfg-{node}", NAMESPACE, {"data": {"v": value}})
    return int(obj["metadata"]["resourceVersion"])


class ConfigMapStream(threading.Thread):
    """ConfigMap updates at ``rate``/s to random nodes, from a client of its own, until stopped."""

    def __init__(self, kube: Kube, names: list[str], rate: float, seed: int) -> None:
        super().__init__(name="configmap-stream", daemon=True)
        self.kube, self.names, self.rate = kube, names, rate
        self.rng = random.Random(seed)
        self.writes: list[tuple[str, int, int]] = []  # (ConfigMap key, resourceVersion, when written)
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic_ns()
        i = 0
        while not self.halt.is_set():
            due = start + int(i * 1e9 / self.rate)
            while (now := time.monotonic_ns()) < due and not self.halt.is_set():
                time.sleep(min(0.005, (due - now) / 1e9))
            node = self.rng.choice(self.names)
            written = time.monotonic_ns()
            try:
                rv = set_configmap(self.kube.core, node, f"stream-{i}")
            except Exception:  # counted and reported: one failed write is not a reason to stop measuring
                self.errors += 1
            else:
                self.writes.append((configmap_key(node), rv, written))
            i += 1

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=30)
