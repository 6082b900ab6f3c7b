"""The whole system on real parts: kube-apiserver, cloud broker, CloudHub, EdgeController, and edge nodes.

``cluster_factory`` runs them per test on the ``apiserver`` fixture (no Kubernetes controllers: pods name
their node); ``controlplane_cluster`` runs them once per session, with two edge nodes, on the ``controlplane``
fixture (scheduler and controller-manager: Deployments, DaemonSets, Jobs), and ``controlplane_namespace``
gives each test its own namespace there.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from schemas.envelope import Envelope, decode
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.controlplane import ControlPlane
from tests.fixtures.mqtt import TestClient
from tests.fixtures.podman import Podman
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.edge_node import EdgeNode, Link, remove_pods

CLOUD_PW = "cloud-pw"
NODE_PW = "node-pw"
NODE_INDEX_LABEL = "edgehive.test/node-index"
"""On ``controlplane_cluster``'s nodes: "1" and "2", for tests that target one node with a nodeSelector."""
SERVICE_ACCOUNT_TIMEOUT = 30.0
NAMESPACE_GONE_TIMEOUT = 60.0


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


def start_cluster(api: ApiServer, brokers: BrokerFactory, podman: Podman, workdir: Path, nodes: list[str], *,
                  service_accounts: bool = False) -> Cluster:
    """Cloud broker, CloudHub, EdgeController, DeviceController and ``nodes``, all Ready, and a namespace of
    the cluster's own. ``service_accounts``: the API server admits pods only once their namespace has its
    service account (a controller-manager makes it)."""
    users = {"cloud": CLOUD_PW, **{n: NODE_PW for n in nodes}}
    cloud_broker = brokers("amqtt", users=users)
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api.client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    if service_accounts:
        wait_for_service_account(core, namespace)
    cluster = Cluster(api, cloud_broker, brokers, podman, workdir, namespace)
    try:
        cluster.start_cloud("cloudhub")
        cluster.start_cloud("edgecontroller")
        cluster.start_cloud("devicecontroller")
        for name in nodes:
            cluster.add_node(name)
        for name in nodes:
            wait_until(partial(cluster.node_ready, name), timeout=30, what=f"node {name} Ready in the API")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture
def cluster_factory(apiserver: ApiServer, edgehive_broker: BrokerFactory, podman: Podman,
                    tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(nodes: list[str]) -> Cluster:
        cluster = start_cluster(apiserver, edgehive_broker, podman, tmp_path, nodes)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
        _delete_pods(cluster)
    remove_pods(podman)


@pytest.fixture(scope="session")
def controlplane_cluster(controlplane: ControlPlane, session_edgehive_broker: BrokerFactory, podman: Podman,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cloud components and two edge nodes on the full control plane, for the whole session. The nodes
    carry node-role.kubernetes.io/edge="" (as every edge node) and NODE_INDEX_LABEL "1" and "2"; tests
    share them and take their own namespace (``controlplane_namespace``)."""
    nodes = node_names(2)
    cluster = start_cluster(controlplane.api, session_edgehive_broker, podman,
                            tmp_path_factory.mktemp("controlplane-cluster"), nodes, service_accounts=True)
    try:
        for index, name in enumerate(nodes, start=1):
            cluster.core.patch_node(name, {"metadata": {"labels": {NODE_INDEX_LABEL: str(index)}}})
        yield cluster
    finally:
        cluster.stop()
        remove_pods(podman)


@pytest.fixture
def controlplane_namespace(controlplane_cluster: Cluster) -> Iterator[str]:
    """A namespace of the test's own on ``controlplane_cluster``, deleted afterwards: its pods at once (grace
    period 0), then the namespace, waited for, so that the next test finds the shared nodes as they were."""
    core = controlplane_cluster.core
    namespace = f"w-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    wait_for_service_account(core, namespace)
    yield namespace
    with contextlib.suppress(k8s.exceptions.ApiException):  # only a shortcut: deleting the namespace deletes them
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    try:
        core.delete_namespace(namespace)
    except k8s.exceptions.ApiException as exc:
        if exc.status not in (404, 409):  # a test may have deleted its namespace itself
            raise
    wait_until(partial(namespace_gone, core, namespace), timeout=NAMESPACE_GONE_TIMEOUT,
               what=f"namespace {namespace} deleted")


def namespace_gone(core: k8s.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except k8s.exceptions.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def wait_for_service_account(core: k8s.CoreV1Api, namespace: str) -> None:
    """Wait for the namespace's ``default`` ServiceAccount, which kube-controller-manager makes: the API server
    refuses pods without it. The ServiceAccount admission plugin then gives every pod its ``kube-api-access-*``
    volume, which EdgeD serves (edge/edged/tokens.py)."""
    def made() -> bool:
        core.read_namespaced_service_account("default", namespace)
        return True

    wait_until(made, timeout=SERVICE_ACCOUNT_TIMEOUT, interval=0.1,
               what=f"the default ServiceAccount of {namespace} (made by kube-controller-manager)")


def _delete_pods(cluster: Cluster) -> None:
    core = cluster.core
    for pod in core.list_namespaced_pod(cluster.namespace).items:
        core.delete_namespaced_pod(pod.metadata.name, cluster.namespace, grace_period_seconds=0)


def reply_to(client: TestClient, msg_id: str) -> Envelope:
    """The answer to ``msg_id`` among what ``client`` (a node's identity on the cloud broker) hears next."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        envelope = decode(client.expect().payload)
        if envelope.parent == msg_id:
            return envelope
    raise AssertionError(f"no reply to {msg_id}")
