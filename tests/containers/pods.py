"""Pods on the compose stacks' edge node, shared by the compose tests."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from edgehive.compose import podman
from tests.fixtures.processes import wait_until

NODE = "edge-1"


def pod(name: str, annotations: dict[str, str] | None = None, command: tuple[str, ...] = ("sleep", "3600")
        ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2, "containers": [
                {"name": "main", "image": "localhost/busybox:latest", "imagePullPolicy": "Never",
                 "command": list(command)}]}}


def run_pod(kube: k8s.ApiClient, name: str, annotations: dict[str, str] | None = None,
            command: tuple[str, ...] = ("sleep", "3600"), timeout: float = 60.0) -> k8s.V1Pod:
    """The pod as created (after admission), once it is Running on the edge node."""
    core = k8s.CoreV1Api(kube)
    created = core.create_namespaced_pod("default", pod(name, annotations, command))
    wait_until(lambda: core.read_namespaced_pod(name, "default").status.phase == "Running", timeout=timeout,
               what=f"pod {name} Running on {NODE}")
    assert podman("pod", "exists", f"default_{name}", check=False).returncode == 0
    return created
