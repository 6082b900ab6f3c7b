"""A StatefulSet with a volumeClaimTemplate on a local PersistentVolume: the scheduler places the pod on the
volume's node, kube-controller-manager binds the claim, EdgeD mounts the disk, and the data outlives the pod."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster
from tests.workloads.kube import BUSYBOX, all_running, apply, exec_in, kubectl, pods

TIMEOUT = 90.0


def local_volume(name: str, storage_class: str, path: Path, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
                     "local": {"path": str(path)},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}


def stateful_set(namespace: str, storage_class: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": namespace},
            "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "terminationGracePeriodSeconds": 2,
                         "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", "sleep 3600"],
                                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}


def test_statefulset_on_a_local_volume(controlplane_cluster: Cluster, controlplane_namespace: str,
                                       tmp_path: Path) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    core, storage = cluster.core, k8s.StorageV1Api(cluster.api.client)
    target = sorted(cluster.nodes)[1]  # the second node, so that landing there is the volume's doing
    tag = uuid.uuid4().hex[:8]
    storage_class, pv_name = f"local-{tag}", f"local-{tag}"
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "seed").write_text("on the disk before the pod\n")
    # As local volumes are set up: no provisioner, and binding waits for the pod's scheduling.
    apply(cluster, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": storage_class},
                    "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"})
    try:
        apply(cluster, local_volume(pv_name, storage_class, disk, target))
        apply(cluster, stateful_set(ns, storage_class))
        wait_until(lambda: all_running(pods(cluster, ns, "app=db")), timeout=TIMEOUT, what="db-0 Running")
        (first,) = pods(cluster, ns, "app=db")
        assert first.metadata.name == "db-0"
        assert first.spec.node_name == target
        claim = core.read_namespaced_persistent_volume_claim("data-db-0", ns)
        assert claim.status.phase == "Bound"
        assert claim.spec.volume_name == pv_name
        assert exec_in(cluster, ns, "db-0", ["cat", "/data/seed"]) == (0, "on the disk before the pod\n")
        assert exec_in(cluster, ns, "db-0", ["sh", "-c", "echo written by db-0 > /data/state"]) == (0, "")
        assert (disk / "state").read_text() == "written by db-0\n"

        # The pod goes; the StatefulSet makes it again, with the same claim, on the same node, over the same data.
        kubectl(cluster, "delete", "pod", "db-0", "-n", ns, "--wait=false")
        def made_again() -> Any:
            found = pods(cluster, ns, "app=db")
            return found[0] if len(found) == 1 and found[0].metadata.uid != first.metadata.uid \
                and all_running(found) else None

        second = wait_until(made_again, timeout=TIMEOUT, what="db-0 made again and Running")
        assert second.spec.node_name == target
        assert exec_in(cluster, ns, "db-0", ["cat", "/data/state"]) == (0, "written by db-0\n")
    finally:
        kubectl(cluster, "delete", "statefulset", "db", "-n", ns, "--wait=false")
        kubectl(cluster, "delete", "persistentvolume", pv_name, "--wait=false")
        storage.delete_storage_class(storage_class)
