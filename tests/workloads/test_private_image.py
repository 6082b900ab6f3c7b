"""A Deployment of a private image, as users set it up: ``kubectl create secret docker-registry`` and the secret
on the namespace's ServiceAccount, which the API server's ServiceAccount admission copies into each pod. The image
comes from the session's private registry (docker-registry with htpasswd and TLS) and pulls only with the secret."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.fixtures.registry import Registry
from tests.support.cluster import Cluster
from tests.workloads.kube import apply, deployment_ready, edge_nodes, kubectl, local_image, pods

TIMEOUT = 90.0


def deployment(cluster: Cluster, name: str, image: str, namespace: str) -> dict[str, Any]:
    made = json.loads(kubectl(cluster, "create", "deployment", name, f"--image={image}", "-n", namespace,
                              "--dry-run=client", "-o", "json", "--", "sleep", "3600"))
    return local_image(made)


def pull_failure(cluster: Cluster, namespace: str, selector: str) -> Any:
    """The waiting state of the first pod's container once it is an image pull failure."""
    for pod in pods(cluster, namespace, selector):
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            if waiting is not None and waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                return waiting
    return None


def remove_image(cluster: Cluster, image: str) -> None:
    with cluster.podman.client() as client:
        if client.images.exists(image):
            client.images.remove(image, force=True)
        assert not client.images.exists(image)


def test_a_private_image_runs_with_the_service_accounts_pull_secret(
        controlplane_cluster: Cluster, controlplane_namespace: str, registry: Registry) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apps = k8s.AppsV1Api(cluster.api.client)
    remove_image(cluster, registry.image)  # pulled by an earlier test? Then IfNotPresent would prove nothing
    try:
        apply(cluster, deployment(cluster, "without", registry.image, ns))
        waiting = wait_until(lambda: pull_failure(cluster, ns, "app=without"), timeout=TIMEOUT,
                             what="the pod without credentials failing its pull")
        assert "unauthorized: authentication required" in waiting.message

        kubectl(cluster, "create", "secret", "docker-registry", "regcred", "-n", ns, f"--docker-server={registry.host}",
                f"--docker-username={registry.user}", f"--docker-password={registry.password}")
        cluster.core.patch_namespaced_service_account("default", ns, {"imagePullSecrets": [{"name": "regcred"}]})
        apply(cluster, deployment(cluster, "with", registry.image, ns))
        wait_until(lambda: deployment_ready(apps, "with", ns, 1), timeout=TIMEOUT, what="with: 1 Ready replica")
        (pod,) = pods(cluster, ns, "app=with")
        assert [s.name for s in pod.spec.image_pull_secrets] == ["regcred"]  # put there by the admission plugin
        assert pod.spec.node_name in edge_nodes(cluster)
        assert pod.status.container_statuses[0].image == registry.image
    finally:
        kubectl(cluster, "delete", "deployment", "without", "with", "-n", ns, "--ignore-not-found", "--wait=false")
        remove_image(cluster, registry.image)
