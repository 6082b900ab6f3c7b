"""imagePullSecrets on real parts: a private registry (docker-registry with htpasswd and TLS), the API server,
the cloud side and an edge node pulling through podman. The image pulls only with its secret."""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.fixtures.registry import Registry
from tests.support.cluster import Cluster, node_names


def create_secret(cluster: Cluster, name: str, registry_key: str, user: str, password: str, *,
                  legacy: bool = False) -> None:
    """A kubernetes.io/dockerconfigjson Secret, or with ``legacy`` a kubernetes.io/dockercfg one (the registry
    map itself, under .dockercfg)."""
    auths = {registry_key: {"username": user, "password": password,
                            "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}
    kind, field, config = ("dockercfg", ".dockercfg", auths) if legacy else \
        ("dockerconfigjson", ".dockerconfigjson", {"auths": auths})
    cluster.core.create_namespaced_secret(cluster.namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=name), type=f"kubernetes.io/{kind}",
        data={field: base64.b64encode(json.dumps(config).encode()).decode()}))


def private_pod(name: str, node: str, image: str, secrets: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                     "imagePullSecrets": [{"name": s} for s in secrets],
                     "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", "sleep 3600"]}]}}


def waiting(cluster: Cluster, name: str, needle: str) -> Any:
    """The container's waiting state once it is an image pull failure whose message holds ``needle``."""
    pod = cluster.pod(name)
    statuses = (pod.status.container_statuses or []) if pod is not None else []
    state = statuses[0].state.waiting if statuses else None
    if state is not None and state.reason in ("ErrImagePull", "ImagePullBackOff") and needle in (state.message or ""):
        return state
    return None


def running(cluster: Cluster, name: str) -> Any:
    pod = cluster.pod(name)
    statuses = (pod.status.container_statuses or []) if pod is not None else []
    return pod if pod is not None and pod.status.phase == "Running" and statuses and statuses[0].state.running \
        else None


def image_present(cluster: Cluster, image: str) -> bool:
    with cluster.podman.client() as client:
        return bool(client.images.exists(image))


def remove_image(cluster: Cluster, image: str) -> None:
    with cluster.podman.client() as client:
        if client.images.exists(image):
            client.images.remove(image, force=True)
    assert not image_present(cluster, image)


def test_a_private_image_pulls_only_with_its_secret(cluster_factory: Any, registry: Registry) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    # Pulled by an earlier run of this session? Then IfNotPresent would prove nothing.
    remove_image(cluster, registry.image)
    try:
        # No secret at all: the registry's 401.
        core.create_namespaced_pod(ns, private_pod("anonymous", node, registry.image, []))
        state = wait_until(lambda: waiting(cluster, "anonymous", "unauthorized"), timeout=30,
                           what="anonymous in ErrImagePull with the registry's reason")
        assert registry.image in state.message

        # A secret with the wrong password: the registry's 401 again, for that pull.
        create_secret(cluster, "wrong", registry.host, registry.user, "not-the-password")
        core.create_namespaced_pod(ns, private_pod("wrong-password", node, registry.image, ["wrong"]))
        wait_until(lambda: waiting(cluster, "wrong-password", "unauthorized: authentication required"), timeout=30,
                   what="wrong-password in ErrImagePull with the registry's 401 reason")

        # A secret that is not there yet: the pod waits, and says which secret it waits for.
        core.create_namespaced_pod(ns, private_pod("later", node, registry.image, ["regcred"]))
        state = wait_until(lambda: waiting(cluster, "later", 'secret "regcred" not found'), timeout=30,
                           what="later waiting for its pull secret")
        assert "unauthorized" in state.message
        assert not image_present(cluster, registry.image)
        assert running(cluster, "anonymous") is None
        assert running(cluster, "wrong-password") is None

        # The secret arrives (the legacy dockercfg type, keyed with a scheme and a path): the pull is tried again
        # at once, not after the back-off (10 s, then 20 s), and the pod runs.
        create_secret(cluster, "regcred", f"https://{registry.host}/private", registry.user, registry.password,
                      legacy=True)
        wait_until(lambda: running(cluster, "later"), timeout=9, what="later Running once its secret arrived")
        assert image_present(cluster, registry.image)
    finally:
        remove_image(cluster, registry.image)
