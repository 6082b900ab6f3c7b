"""The edge node on real podman and real brokers: pods from envelopes, status, and life without the cloud."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from podman import PodmanClient

from schemas.envelope import Op
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.support.cloud import FakeCloud
from tests.support.edge_node import EdgeNode, Link

NS = "default"
IMAGE = "localhost/busybox:latest"


def configmap(name: str, data: dict[str, str], rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS,
                                                                   "uid": f"cm-{name}", "resourceVersion": rv},
            "data": data}


def secret(name: str, data: dict[str, str], rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "uid": f"s-{name}",
                                                               "resourceVersion": rv},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def pod(name: str, command: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "spec": {"nodeName": "edge-1", "terminationGracePeriodSeconds": 2, "containers": [container], **spec}}


def running(cloud: FakeCloud, name: str) -> dict[str, Any] | None:
    status = cloud.pod_status(NS, name)
    return status if status is not None and status["phase"] == "Running" and all(
        "running" in c["state"] for c in status["containerStatuses"]) else None


def exec_in(node: EdgeNode, pod_name: str, command: list[str]) -> tuple[int, str]:
    with PodmanClient(base_url=node.podman.base_url) as client:
        matches = [c for c in client.containers.list(filters={"label": f"io.edgehive.pod={pod_name}"})
                   if c.attrs.get("State") == "running" and "io.edgehive.container" in c.attrs["Labels"]]
        assert matches, f"no running container of pod {pod_name}"
        code, output = matches[0].exec_run(command, demux=True)
    assert isinstance(output, tuple)
    out, err = output
    return int(code), bytes(out or b"").decode() + bytes(err or b"").decode()


def test_pod_with_configmap_volume_and_secret_env(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, _link, cloud = edge_node
    ack = cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "configmap", "app-config"),
                                             configmap("app-config", {"mode": "fast"}, "10"), rv="10"))
    assert ack.op == Op.RESPONSE
    assert ack.body == {"outcome": "applied"}
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "secret", "app-secret"),
                                       secret("app-secret", {"token": "s3cr3t"}, "11"), rv="11"))
    spec = pod("app", "sleep 3600", volumes=[{"name": "cfg", "configMap": {"name": "app-config"}}],
               container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}],
                          "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret",
                                                                                   "key": "token"}}}]})
    t0 = time.monotonic()
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "app"), spec, rv="12"))
    status = wait_until(lambda: running(cloud, "app"), timeout=30, what="pod app Running")
    started_in = time.monotonic() - t0
    assert status["podIP"]
    assert exec_in(node, "app", ["cat", "/etc/app/mode"]) == (0, "fast")
    assert exec_in(node, "app", ["sh", "-c", "echo -n $TOKEN"]) == (0, "s3cr3t")

    cloud.send_and_wait(cloud.envelope(Op.UPDATE, ResourceKey(NS, "configmap", "app-config"),
                                       configmap("app-config", {"mode": "safe"}, "20"), rv="20"))
    wait_until(lambda: exec_in(node, "app", ["cat", "/etc/app/mode"]) == (0, "safe"), timeout=15,
               what="the ConfigMap file to change in the container")
    print(f"\npod running {started_in:.2f} s after its envelope was acknowledged-sent")
