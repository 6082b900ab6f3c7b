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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from edgehive.localcluster import STREAM_CERT, STREAM_KEY
from schemas import topics
from schemas.envelope import Envelope, decode
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.controlplane import ControlPlane
from tests.fixtures.mqtt import TestClient
from tests.fixtures.podman import Podman
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.support.edge_node import EdgeNode, Link, remove_pods
from tests.support.natnode import start_nat_node
from tests.support.natns import NatNamespace

CLOUD_PW = "cloud-pw"
NODE_PW = "node-pw"
NODE_INDEX_LABEL = "edgehive.test/node-index"
"""On ``controlplane_cluster``'s nodes: "1" and "2", for tests that target one node with a nodeSelector."""
SERVICE_ACCOUNT_TIMEOUT = 30.0
STREAMS_PER_NODE = 8
"""The cloud stream server's cap here: small, so that a test reaches it with a few kubectl processes, and above
what a test opens at once plus what it closed just before: a stream's slot is freed when the stream server hears
that kubectl's connection ended, which under load comes after the test's next connections (4 at the cap of 4:
two of a port-forward's four concurrent connections were refused, with the suite in two workers)."""
NAMESPACE_GONE_TIMEOUT = 60.0
METRICS_SCRAPE_S = 2.0
"""The metrics API's scrape interval here: short, so that kubectl top has two readings within seconds."""


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
    stream_port: int = field(default_factory=free_port)
    """The cloud stream server's: every edge node's kubelet endpoint (kubectl logs)."""
    router_port: int = field(default_factory=free_port)
    """The router's HTTP door (rest-to-eventbus Rules): started by the tests that use it."""

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api.client)

    def cloud_argv(self, component: str) -> list[str]:
        common = ["--broker", self.cloud_broker.url("cloud", CLOUD_PW), "--log-level", "info"]
        pki = self.api.ca_file.parent  # the local API server's, which made the stream server's certificates
        extra = {"cloudhub": ["--keepalive-timeout-s", "8"],
                 "edgecontroller": ["--kubeconfig", str(self.api.kubeconfig), "--stream-address",
                                    f"127.0.0.1:{self.stream_port}"],
                 "devicecontroller": ["--kubeconfig", str(self.api.kubeconfig)],
                 "router": ["--kubeconfig", str(self.api.kubeconfig), "--listen", f"127.0.0.1:{self.router_port}",
                            "--status-interval-s", "0.3"],
                 "stream": ["--kubeconfig", str(self.api.kubeconfig), "--listen", f"127.0.0.1:{self.stream_port}",
                            "--tls-cert", str(pki / STREAM_CERT), "--tls-key", str(pki / STREAM_KEY),
                            "--client-ca", str(self.api.ca_file), "--idle-timeout-s", "9",
                            "--max-streams-per-node", str(STREAMS_PER_NODE)],
                 # kubectl top: started by the tests that use it (it registers the cluster-wide APIService).
                 "metricsapi": ["--kubeconfig", str(self.api.kubeconfig), "--listen", "0.0.0.0:0",
                                "--scrape-interval-s", str(METRICS_SCRAPE_S)]}[component]
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

    def ready_status(self, node: str) -> str:
        """The status of the node's Ready condition ("True", "False", "Unknown"), "" while it has none."""
        for condition in self.core.read_node(node).status.conditions or []:
            if condition.type == "Ready":
                return str(condition.status)
        return ""

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
                  service_accounts: bool = False, behind_nat: Mapping[str, NatNamespace] | None = None,
                  spare: Sequence[str] = ()) -> Cluster:
    """Cloud broker, CloudHub, EdgeController, DeviceController and ``nodes``, all Ready, and a namespace of
    the cluster's own. ``service_accounts``: the API server admits pods only once their namespace has its
    service account (a controller-manager makes it). ``behind_nat``: more nodes, each in its namespace behind
    NAT (tests/support/natnode.py), which the cloud broker listens for at the namespace's gateway. ``spare``:
    node names the cloud broker accepts but that are not started, for a test to add later (``add_node``)."""
    behind_nat = behind_nat or {}
    users = {"cloud": CLOUD_PW, **{n: NODE_PW for n in [*nodes, *behind_nat, *spare]}}
    cloud_broker = brokers("amqtt", users=users, also_listen=[ns.host_address for ns in behind_nat.values()])
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
        cluster.start_cloud("stream")
        for name in nodes:
            cluster.add_node(name)
        for name, ns in behind_nat.items():
            cluster.nodes[name] = start_nat_node(ns, name, cloud_broker, NODE_PW, workdir)
        for name in [*nodes, *behind_nat]:
            wait_until(partial(cluster.node_ready, name), timeout=30, what=f"node {name} Ready in the API")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture
def cluster_factory(apiserver: ApiServer, edgehive_broker: BrokerFactory, podman: Podman,
                    tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(nodes: list[str], behind_nat: Mapping[str, NatNamespace] | None = None,
             spare: Sequence[str] = ()) -> Cluster:
        cluster = start_cluster(apiserver, edgehive_broker, podman, tmp_path, nodes, behind_nat=behind_nat,
                                spare=spare)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
        _delete_pods(cluster)
    remove_pods(podman, tmp_path)


@pytest.fixture(scope="session")
def controlplane_cluster(controlplane: ControlPlane, session_edgehive_broker: BrokerFactory, podman: Podman,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cloud components and two edge nodes on the full control plane, for the whole session. The nodes
    carry node-role.kubernetes.io/edge="" (as every edge node) and NODE_INDEX_LABEL "1" and "2"; tests
    share them and take their own namespace (``controlplane_namespace``)."""
    nodes = node_names(2)
    data = tmp_path_factory.mktemp("controlplane-cluster")
    cluster = start_cluster(controlplane.api, session_edgehive_broker, podman, data, nodes,
                            service_accounts=True)
    try:
        for index, name in enumerate(nodes, start=1):
            cluster.core.patch_node(name, {"metadata": {"labels": {NODE_INDEX_LABEL: str(index)}}})
        yield cluster
    finally:
        cluster.stop()
        remove_pods(podman, data)


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


def ask_as_node(client: TestClient, envelope: Envelope) -> Envelope:
    """Publish ``envelope`` on its node's up link (``client`` holds that node's identity and listens on its down
    link) and return the cloud's answer."""
    client.publish(topics.link_up(envelope.node), envelope.encode())
    return reply_to(client, envelope.id)
