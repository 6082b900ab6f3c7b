"""The autonomy webhook on the real API server (kube-apiserver 1.20, DefaultTolerationSeconds on): the process
registers itself, and pods that can only run on edge nodes get forever offline tolerations at creation."""

from __future__ import annotations

import ssl
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client as k8s

from cloud.admission.review import OPT_OUT
from cloud.clusterpki import ClusterPki
from cloud.kube import Kube
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

EDGE = "node-role.kubernetes.io/edge"
UNREACHABLE, NOT_READY = "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"


@dataclass
class Webhook:
    process: ManagedProcess
    name: str
    port: int
    ca: bytes


@pytest.fixture
def webhook(apiserver: ApiServer, edgehive_broker: BrokerFactory, tmp_path: Any) -> Iterator[Webhook]:
    kube = Kube.connect(str(apiserver.kubeconfig))
    pki = ClusterPki(kube)
    pki.init(["DNS:localhost", "IP:127.0.0.1"])
    ca, _ = pki.ca()
    broker = edgehive_broker("amqtt", users={"cloud": "cloud-pw"})
    name, port = f"edgehive-autonomy-{uuid.uuid4().hex[:6]}", free_port()
    process = ManagedProcess("admission", [
        sys.executable, "-m", "cloud.admission", "--kubeconfig", str(apiserver.kubeconfig),
        "--broker", broker.url("cloud", "cloud-pw"), "--listen", f"127.0.0.1:{port}", "--webhook-name", name],
        tmp_path / "admission.log").start()
    registrations = k8s.AdmissionregistrationV1Api(apiserver.client)
    try:
        wait_until(lambda: _registered(registrations, name), timeout=30, what="the webhook registered", alive=process)
        yield Webhook(process, name, port, ca.cert_pem)
    finally:
        process.stop()
        registrations.delete_mutating_webhook_configuration(name)
        kube.close()


def _registered(api: k8s.AdmissionregistrationV1Api, name: str) -> bool:
    try:
        api.read_mutating_webhook_configuration(name)
    except k8s.exceptions.ApiException:
        return False
    return True


def manifest(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "main", "image": "localhost/busybox"}], **spec}}


def offline_tolerations(pod: Any) -> dict[str, int | None]:
    """The pod's unreachable and not-ready NoExecute tolerations: key -> tolerationSeconds (None: for ever)."""
    return {t.key: t.toleration_seconds for t in pod.spec.tolerations or []
            if t.key in (UNREACHABLE, NOT_READY) and t.effect == "NoExecute"}


FOREVER = {UNREACHABLE: None, NOT_READY: None}
DEFAULT = {UNREACHABLE: 300, NOT_READY: 300}


def test_edge_pods_get_forever_tolerations_at_creation(apiserver: ApiServer, webhook: Webhook) -> None:
    core = k8s.CoreV1Api(apiserver.client)
    tag = uuid.uuid4().hex[:6]
    namespace = f"t-{tag}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    edge_node, opted_node = f"edge-{tag}", f"edge-{tag}-evictable"
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": edge_node, "labels": {EDGE: ""}}})
    core.create_node({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": opted_node, "labels": {EDGE: "", OPT_OUT: "true"}}})
    try:
        cases = {
            "by-selector": (manifest("by-selector", nodeSelector={EDGE: ""}), FOREVER),
            "by-name": (manifest("by-name", nodeName=edge_node), FOREVER),
            "by-affinity": (manifest("by-affinity", affinity={"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": EDGE, "operator": "Exists"}]}]}}}), FOREVER),
            "opted-out": (manifest("opted-out", {OPT_OUT: "true"}, nodeSelector={EDGE: ""}), DEFAULT),
            "on-opted-out-node": (manifest("on-opted-out-node", nodeName=opted_node), DEFAULT),
            "cloud": (manifest("cloud"), DEFAULT),
        }
        for name, (body, expected) in cases.items():
            created = core.create_namespaced_pod(namespace, body)
            assert offline_tolerations(created) == expected, name
        cloud = core.read_namespaced_pod("cloud", namespace)
        assert len(cloud.spec.tolerations) == 2  # untouched: only DefaultTolerationSeconds' two

        # A whole namespace opts out through the webhook's namespaceSelector: it is not even called.
        quiet = f"t-{uuid.uuid4().hex[:8]}"
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=quiet, labels={OPT_OUT: "true"})))
        try:
            created = core.create_namespaced_pod(quiet, manifest("edge-but-evictable", nodeSelector={EDGE: ""}))
            assert offline_tolerations(created) == DEFAULT
        finally:
            core.delete_namespace(quiet)

        # Bad input to the server itself: answered 400, and the server keeps serving.
        context = ssl.create_default_context(cadata=webhook.ca.decode())
        request = urllib.request.Request(f"https://127.0.0.1:{webhook.port}/mutate", data=b"{not json",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, context=context, timeout=10)
        assert refused.value.code == 400
        assert offline_tolerations(core.create_namespaced_pod(namespace, manifest("after", nodeName=edge_node))) \
            == FOREVER

        # A restart puts its registration back as it should be (someone changed it meanwhile) and serves on, with
        # a certificate of its own from the same CA.
        registrations = k8s.AdmissionregistrationV1Api(apiserver.client)
        webhook.process.stop()
        registrations.patch_mutating_webhook_configuration(webhook.name, [
            {"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 29}])
        webhook.process.start()
        wait_until(lambda: registrations.read_mutating_webhook_configuration(webhook.name).webhooks[0].timeout_seconds
                   == 5, timeout=30, what="the restarted webhook's registration replaced", alive=webhook.process)
        wait_until(lambda: offline_tolerations(core.create_namespaced_pod(
            namespace, manifest(f"restarted-{uuid.uuid4().hex[:4]}", nodeName=edge_node))) == FOREVER,
            timeout=30, what="the restarted webhook serving")

        # failurePolicy Ignore: with the webhook gone, pods are still created (with the default tolerations).
        webhook.process.stop()
        created = core.create_namespaced_pod(namespace, manifest("webhook-down", nodeSelector={EDGE: ""}))
        assert offline_tolerations(created) == DEFAULT
    finally:
        core.delete_node(edge_node)
        core.delete_node(opted_node)
        core.delete_namespace(namespace)
