"""The whole system on real parts: kube-apiserver, cloud broker, CloudHub, EdgeController, and edge nodes."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.podman import Podman
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.edge_node import EdgeNode, Link, remove_pods

CLOUD_PW = "cloud-pw"
NODE_PW = "node-pw"


@dataclass
class Cluster:
    api: ApiServer
    cloud_broker: Broker
    brokers: BrokerFactory
    podman: Podman
    workdir: Path
    namespace: str
    cloud: dict[str, ManagedProcess] = field(default_factory=dict)
    nodes: dict[str, tuple[EdgeNode, Link]] = field(default_factory=dict)
    starts: int = 0

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api.client)

    def cloud_argv(self, component: str) -> list[str]:
        common = ["--broker", self.cloud_broker.url("cloud", CLOUD_PW), "--log-level", "info"]
        extra = {"cloudhub": ["--keepalive-timeout-s", "8"],
                 "edgecontroller": ["--kubeconfig", str(self.api.kubeconfig)],
                 "devicecontroller": ["--kubeconfig", str(self.api.kubeconfig)]}[component]
        return [sys.executable, "-m", f"cloud.{component}", *common, *extra]

    def start_cloud(self, component: str) -> ManagedProcess:
        self.starts += 1
        process = ManagedProcess(f"{component}-{self.starts}", self.cloud_argv(component),
                                 self.workdir / f"{component}-{self.starts}.log").start()
        self.cloud[component] = process
        return process

    def add_node(self, name: str) -> tuple[EdgeNode, Link]:
        edge_broker = self.brokers("amqtt")
        link = Link([sys.executable, "-m", "broker.bridge", "--node", name, "--edge", edge_broker.url(),
                     "--cloud", self.cloud_broker.url(name, NODE_PW)], self.workdir, edge_broker, node=name)
        link.up()
        node = EdgeNode(self.cloud_broker, edge_broker, self.podman, self.workdir, node=name)
        node.data.mkdir(parents=True, exist_ok=True)
        node.start_all()
        self.nodes[name] = (node, link)
        return node, link

    def node_ready(self, name: str) -> dict[str, Any] | None:
        try:
            node = self.core.read_node(name)
        except k8s.exceptions.ApiException:
            return None
        for condition in node.status.conditions or []:
            if condition.type == "Ready" and condition.status == "True":
                return k8s.ApiClient().sanitize_for_serialization(node)  # type: ignore[no-any-return]
        return None

    def pod(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_pod(name, self.namespace)
        except k8s.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def stop(self) -> None:
        for node, link in self.nodes.values():
            node.stop_all()
            link.stop()
        for process in self.cloud.values():
            process.stop()


def node_names(count: int) -> list[str]:
    """Fresh node names per test: the API server lives for the whole session."""
    tag = uuid.uuid4().hex[:6]
    return [f"edge-{tag}-{i + 1}" for i in range(count)]


@pytest.fixture
def cluster_factory(apiserver: ApiServer, edgehive_broker: BrokerFactory, podman: Podman,
                    tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(nodes: list[str]) -> Cluster:
        users = {"cloud": CLOUD_PW, **{n: NODE_PW for n in nodes}}
        cloud_broker = edgehive_broker("amqtt", users=users)
        namespace = f"t-{uuid.uuid4().hex[:8]}"
        k8s.CoreV1Api(apiserver.client).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        cluster = Cluster(apiserver, cloud_broker, edgehive_broker, podman, tmp_path, namespace)
        made.append(cluster)
        cluster.start_cloud("cloudhub")
        cluster.start_cloud("edgecontroller")
        cluster.start_cloud("devicecontroller")
        for name in nodes:
            cluster.add_node(name)
        for name in nodes:
            wait_until(partial(cluster.node_ready, name), timeout=30, what=f"node {name} Ready in the API")
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
        _delete_pods(cluster)
    remove_pods(podman)


def _delete_pods(cluster: Cluster) -> None:
    core = cluster.core
    for pod in core.list_namespaced_pod(cluster.namespace).items:
        core.delete_namespaced_pod(pod.metadata.name, cluster.namespace, grace_period_seconds=0)
