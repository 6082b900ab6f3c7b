"""Jobs and CronJobs run to completion on the edge nodes."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster
from tests.workloads.kube import BUSYBOX, apply, edge_nodes, pods

TIMEOUT = 90.0
CRON_TIMEOUT = 150.0  # the next minute's boundary (up to 60 s), the controller's 10 s sync, then the Job


def job_template(command: str) -> dict[str, Any]:
    return {"spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", command]}]}}}}


def succeeded(batch: k8s.BatchV1Api, name: str, namespace: str) -> bool:
    status = batch.read_namespaced_job(name, namespace).status
    if status.failed:
        raise AssertionError(f"job {name} failed: {status}")
    return bool(status.succeeded == 1 and status.completion_time)


def test_job_runs_to_succeeded(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apply(cluster, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": ns},
                    **job_template("echo done; exit 0")})
    batch = k8s.BatchV1Api(cluster.api.client)
    wait_until(lambda: succeeded(batch, "once", ns), timeout=TIMEOUT, what="job once Succeeded")
    (pod,) = pods(cluster, ns, "job-name=once")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name in edge_nodes(cluster)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_cronjob_creates_a_job_that_succeeds(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    """Every minute is cron's finest schedule, so this waits for the next minute's boundary."""
    cluster, ns = controlplane_cluster, controlplane_namespace
    apply(cluster, {"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": ns},
                    "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid",
                             "jobTemplate": job_template("date")}})
    batch = k8s.BatchV1Api(cluster.api.client)

    def a_job_succeeded() -> str | None:
        for job in batch.list_namespaced_job(ns).items:
            owners = job.metadata.owner_references or []
            if any(o.kind == "CronJob" and o.name == "tick" for o in owners) and succeeded(batch, job.metadata.name,
                                                                                         ns):
                return str(job.metadata.name)
        return None

    name = wait_until(a_job_succeeded, timeout=CRON_TIMEOUT, interval=0.5, what="a Job of CronJob tick Succeeded")
    (pod,) = [p for p in pods(cluster, ns, f"job-name={name}")]
    assert pod.spec.node_name in edge_nodes(cluster)
    assert pod.status.phase == "Succeeded"
