"""Pods for the edge node's tests, and a look inside their containers through podman."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from podman import PodmanClient

from edge.podlabels import CONTAINER_LABEL, NAMESPACE_LABEL, POD_LABEL
from schemas.envelope import Op
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.support.cloud import FakeCloud
from tests.support.edge_node import EdgeNode

NS = "default"
IMAGE = "localhost/busybox:latest"


def pod(name: str, command: str, **spec: Any) -> dict[str, Any]:
    """A busybox pod on edge-1 running ``command`` in its one container ``main``; ``container`` adds to that
    container's spec, the other keywords to the pod's."""
    container = {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "spec": {"nodeName": "edge-1", "terminationGracePeriodSeconds": 2, "containers": [container], **spec}}


def exec_output(podman_url: str, pod_name: str, argv: list[str], *, namespace: str | None = None,
                container: str | None = None) -> tuple[int, str, str]:
    """Run ``argv`` in the pod's running container (the one named ``container``, else the first) as podman
    holds it: exit code, stdout, stderr. ``namespace`` tells apart pods of one name in two namespaces."""

    def wanted(labels: dict[str, str]) -> bool:
        return (CONTAINER_LABEL in labels and (container is None or labels[CONTAINER_LABEL] == container)
                and (namespace is None or labels.get(NAMESPACE_LABEL) == namespace))

    with PodmanClient(base_url=podman_url) as client:
        found = [c for c in client.containers.list(filters={"label": f"{POD_LABEL}={pod_name}"})
                 if c.attrs.get("State") == "running" and wanted(c.attrs["Labels"])]
        assert found, f"no running container {container or ''} in pod {namespace or ''}/{pod_name}"
        code, output = found[0].exec_run(argv, demux=True)
    assert isinstance(output, tuple)
    out, err = output
    return int(code or 0), bytes(out or b"").decode(), bytes(err or b"").decode()


def exec_in(node: EdgeNode, pod_name: str, command: list[str]) -> tuple[int, str]:
    """Run ``command`` in the pod's running container (the only one running); (exit code, output)."""
    code, out, err = exec_output(node.podman.base_url, pod_name, command)
    return code, out + err


def pod_exists(node: EdgeNode, name: str) -> bool:
    with PodmanClient(base_url=node.podman.base_url) as client:
        return any(p.name == f"{NS}_{name}" for p in client.pods.list())


def containers_of(node: EdgeNode, pod_name: str) -> list[str]:
    """The names (the spec's) of every container podman has for the pod, in any state."""
    with PodmanClient(base_url=node.podman.base_url) as client:
        return [c.attrs["Labels"]["io.edgehive.container"]
                for c in client.containers.list(all=True, filters={"label": f"io.edgehive.pod={pod_name}"})
                if "io.edgehive.container" in c.attrs["Labels"]]


def send(cloud: FakeCloud, spec: dict[str, Any], rv: str = "1") -> None:
    """Give the edge node ``spec`` (an insert of the pod at resource version ``rv``) and wait for its answer."""
    name = spec["metadata"]["name"]
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", name), spec, rv=rv))


def status_where(cloud: FakeCloud, name: str, test: Callable[[dict[str, Any]], Any], what: str,
                 timeout: float = 40) -> dict[str, Any]:
    """The pod's last status once ``test(status)`` holds for it; a timeout shows the last status there was."""
    def holds() -> dict[str, Any] | None:
        status = cloud.pod_status(NS, name)
        return status if status is not None and test(status) else None
    try:
        return wait_until(holds, timeout=timeout, what=what)
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc}; the last status: {json.dumps(cloud.pod_status(NS, name))}", pytrace=False)
