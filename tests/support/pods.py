"""Pods for the edge node's tests, and a look inside their containers through podman."""

from __future__ import annotations

import uuid
from typing import Any

from podman import PodmanClient

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


def exec_in(node: EdgeNode, pod_name: str, command: list[str]) -> tuple[int, str]:
    """Run ``command`` in the pod's running container (the only one running); (exit code, output)."""
    with PodmanClient(base_url=node.podman.base_url) as client:
        matches = [c for c in client.containers.list(filters={"label": f"io.edgehive.pod={pod_name}"})
                   if c.attrs.get("State") == "running" and "io.edgehive.container" in c.attrs["Labels"]]
        assert matches, f"no running container of pod {pod_name}"
        code, output = matches[0].exec_run(command, demux=True)
    assert isinstance(output, tuple)
    out, err = output
    return int(code or 0), bytes(out or b"").decode() + bytes(err or b"").decode()


def pod_exists(node: EdgeNode, name: str) -> bool:
    with PodmanClient(base_url=node.podman.base_url) as client:
        return any(p.name == f"{NS}_{name}" for p in client.pods.list())


def containers_of(node: EdgeNode, pod_name: str) -> list[str]:
    """The names (the spec's) of every container podman has for the pod, in any state."""
    with PodmanClient(base_url=node.podman.base_url) as client:
        return [c.attrs["Labels"]["io.edgehive.container"]
                for c in client.containers.list(all=True, filters={"label": f"io.edgehive.pod={pod_name}"})
                if "io.edgehive.container" in c.attrs["Labels"]]
