"""The apiserver fixture is a real kube-apiserver: objects, watches, conflicts, CRDs."""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from tests.fixtures.apiserver import ApiServer
from tests.fixtures.processes import wait_until


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(apiserver.client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    # Without kube-controller-manager the namespace stays Terminating; its name is unique anyway.
    core.delete_namespace(name)


def pod(name: str, node: str) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels={"app": "demo"}),
        spec=k8s.V1PodSpec(node_name=node, containers=[k8s.V1Container(name="main", image="busybox")]),
    )


def test_objects_watch_and_conflict(apiserver: ApiServer, namespace: str) -> None:
    core = k8s.CoreV1Api(apiserver.client)
    created = core.create_namespaced_pod(namespace, pod("p1", "edge-1"))
    assert created.spec.node_name == "edge-1"
    assert created.metadata.resource_version

    cm = core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cfg"), data={"k": "v"})
    )
    assert core.read_namespaced_config_map("cfg", namespace).data == {"k": "v"}

    # Watch from before the pod existed so ADDED is replayed, then cause a MODIFIED.
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    w = watch.Watch()

    def consume() -> None:
        stream = w.stream(core.list_namespaced_pod, namespace, field_selector="spec.nodeName=edge-1",
                          resource_version="0", timeout_seconds=30)
        # Watch.stop() shuts the socket under the reader, which then sees a truncated response.
        with contextlib.suppress(ProtocolError):
            for event in stream:
                events.put((event["type"], event["object"]))

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        kind, obj = events.get(timeout=20)
        assert (kind, obj.metadata.name) == ("ADDED", "p1")
        core.patch_namespaced_pod("p1", namespace, {"metadata": {"labels": {"stage": "two"}}})
        kind, obj = events.get(timeout=20)
        assert kind == "MODIFIED"
        assert obj.metadata.labels["stage"] == "two"
    finally:
        w.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()

    # An update carrying the old resourceVersion is refused with 409 Conflict.
    cm.data = {"k": "stale"}
    core.replace_namespaced_config_map("cfg", namespace, k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="cfg", resource_version=cm.metadata.resource_version), data={"k": "new"}))
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("cfg", namespace, cm)
    assert conflict.value.status == 409
    assert core.read_namespaced_config_map("cfg", namespace).data == {"k": "new"}


def test_custom_resource_definition(apiserver: ApiServer, namespace: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.edgehive.test"
    ext = k8s.ApiextensionsV1Api(apiserver.client)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:
        custom = k8s.CustomObjectsApi(apiserver.client)

        def established() -> bool:
            status = ext.read_custom_resource_definition(f"widgets.{group}").status
            return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

        wait_until(established, timeout=30, what="the CRD to be Established")
        body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
        # The apiserver may answer 404 for a moment after Established while its handler installs.
        wait_until(lambda: custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", body),
                   timeout=30, what="the first Widget to be accepted")
        patched = custom.patch_namespaced_custom_object_status(
            group, "v1", namespace, "widgets", "w1", {"status": {"ready": True}})
        assert patched["status"] == {"ready": True}
        assert custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")["spec"] == {"size": 3}
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def test_a_pod_status_patch_replaces_the_reported_lists(apiserver: ApiServer, namespace: str) -> None:
    """EdgeController's pod status patch on the real API server: the node's lists replace the stored ones.

    A strategic merge of podIPs kept a pod's old address beside its new one (after its sandbox was made
    again), and the API server refuses two addresses of one family: no status could be written again."""
    from cloud.edgecontroller.controller import status_patch  # noqa: PLC0415 (the unit under test)
    from cloud.kube import Kube  # noqa: PLC0415

    core = k8s.CoreV1Api(apiserver.client)
    core.create_namespaced_pod(namespace, pod("moved", "edge-x"))
    kube = Kube(apiserver.client)

    def report(ip: str, container_id: str) -> dict[str, Any]:
        return {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [],
                "containerStatuses": [{"name": "main", "ready": True, "restartCount": 0, "image": "busybox",
                                       "imageID": "", "containerID": container_id,
                                       "state": {"running": {"startedAt": "2026-11-27T00:00:00Z"}}}]}

    for ip, cid in (("10.88.0.7", "podman://a"), ("10.88.0.8", "podman://b")):
        current = core.read_namespaced_pod("moved", namespace).status.conditions or []
        kube.patch_pod_status(namespace, "moved", {"status": status_patch(report(ip, cid), [
            k8s.ApiClient().sanitize_for_serialization(c) for c in current])})
    status = core.read_namespaced_pod("moved", namespace).status
    assert status.phase == "Running"
    assert [p.ip for p in status.pod_ips] == ["10.88.0.8"]
    assert [(c.name, c.container_id) for c in status.container_statuses] == [("main", "podman://b")]
    assert status.container_statuses[0].state.running is not None
