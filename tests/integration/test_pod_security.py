"""securityContext, host namespaces, dns and refusals: pods through the API server, run by podman on an edge node."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from podman import PodmanClient

from edge.edged.hostfacts import ResolvConf
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.support.cluster import Cluster, node_names
from tests.support.pods import exec_output

IMAGE = "localhost/busybox:latest"
KUBERNETES_DEFAULT_CAPS = 0xA80425FB
"""containerd's (and Docker's) default capability set: podman's own lacks AUDIT_WRITE, MKNOD and NET_RAW."""
NET_ADMIN = 1 << 12


def container(name: str, command: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command],
            **fields}


def create(cluster: Cluster, name: str, node: str, containers: list[dict[str, Any]], **spec: Any) -> None:
    cluster.core.create_namespaced_pod(cluster.namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": containers, **spec}})


def running(cluster: Cluster, name: str) -> Any:
    pod = cluster.pod(name)
    statuses = (pod.status.container_statuses or []) if pod is not None else []
    return pod if statuses and pod.status.phase == "Running" and all(s.state.running for s in statuses) else None


def exec_in(cluster: Cluster, pod: str, name: str, command: str) -> tuple[int, str]:
    code, out, err = exec_output(cluster.podman.base_url, pod, ["sh", "-c", command], container=name)
    return code, (out + err).strip()


def podman_containers(cluster: Cluster, pod: str) -> list[str]:
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        return [c.id for c in client.containers.list(all=True, filters={"label": f"io.edgehive.pod={pod}"})]


def cap_eff(cluster: Cluster, pod: str, name: str) -> int:
    code, out = exec_in(cluster, pod, name, "grep CapEff /proc/self/status")
    assert code == 0, out
    return int(out.split()[1], 16)


def test_security_context_runs_as_set(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    cluster.core.create_namespaced_config_map(cluster.namespace, k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="cfg"), data={"key": "value"}))
    create(cluster, "ids", node, [
        container("main", "sleep 3600", volumeMounts=[{"name": "data", "mountPath": "/data"},
                                                      {"name": "cfg", "mountPath": "/cfg"}]),
        container("lean", "sleep 3600", securityContext={
            "runAsUser": 0, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}),
        container("plain", "sleep 3600", securityContext={"runAsUser": 0}),
        {"name": "shell", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh"], "stdin": True,
         "tty": True},  # an interactive shell (kubectl run -it) waits on its terminal instead of ending
    ], securityContext={"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000},
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}])
    create(cluster, "ram", node, [container("main", "sleep 3600", volumeMounts=[{"name": "ram", "mountPath": "/ram"}])],
           volumes=[{"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "2Mi"}}])
    wait_until(lambda: running(cluster, "ids"), timeout=60, what="pod ids Running")

    assert exec_in(cluster, "ids", "main", "id -u; id -g") == (0, "1000\n3000")
    code, groups = exec_in(cluster, "ids", "main", "id -G")
    assert (code, set(groups.split())) == (0, {"2000", "3000", "4000"})
    assert exec_in(cluster, "ids", "main", "touch /data/f && stat -c '%u %g' /data/f") == (0, "1000 2000")
    assert exec_in(cluster, "ids", "main", "stat -Lc '%g' /cfg/key; cat /cfg/key") == (0, "2000\nvalue")

    assert cap_eff(cluster, "ids", "plain") == KUBERNETES_DEFAULT_CAPS
    assert cap_eff(cluster, "ids", "lean") == NET_ADMIN
    assert exec_in(cluster, "ids", "lean", "grep NoNewPrivs /proc/self/status")[1].split()[1] == "1"
    assert exec_in(cluster, "ids", "plain", "grep NoNewPrivs /proc/self/status")[1].split()[1] == "0"
    code, out = exec_in(cluster, "ids", "lean", "touch /x || touch /tmp/x")
    assert code != 0
    assert "Read-only file system" in out
    assert exec_in(cluster, "ids", "plain", "touch /x && echo ok") == (0, "ok")
    wait_until(lambda: running(cluster, "ram"), timeout=60, what="pod ram Running")
    assert exec_in(cluster, "ram", "main", "df -k /ram | tail -1")[1].split()[:2] == ["tmpfs", "2048"]
    code, terminal = exec_in(cluster, "ids", "shell", "readlink /proc/1/fd/0")
    assert (code, terminal.startswith("/dev/pts/")) == (0, True), terminal


def test_host_namespaces_dns_and_host_aliases(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    edged_pid = cluster.nodes[node][0].processes["edged"].pid
    create(cluster, "hosty", node, [container("main", "sleep 3600")], hostPID=True, hostIPC=True,
           hostAliases=[{"ip": "10.1.2.3", "hostnames": ["db.edge", "db"]}], dnsPolicy="None",
           dnsConfig={"nameservers": ["10.9.8.7"], "searches": ["edge.example"],
                      "options": [{"name": "ndots", "value": "3"}]})
    create(cluster, "shared", node, [container("a", "sleep 3600"), container("b", "sleep 3601")],
           shareProcessNamespace=True)
    create(cluster, "hostnet", node, [container("main", "sleep 3600")], hostNetwork=True,
           hostAliases=[{"ip": "10.1.2.4", "hostnames": ["cache"]}], dnsConfig={"nameservers": ["10.9.8.6"]})
    wait_until(lambda: running(cluster, "hosty"), timeout=60, what="pod hosty Running")
    wait_until(lambda: running(cluster, "shared"), timeout=60, what="pod shared Running")

    code, hosts = exec_in(cluster, "hosty", "main", "cat /etc/hosts")
    assert code == 0
    assert any(line.split() == ["10.1.2.3", "db.edge"] for line in hosts.splitlines()), hosts
    assert any(line.split() == ["10.1.2.3", "db"] for line in hosts.splitlines()), hosts
    code, resolv = exec_in(cluster, "hosty", "main", "cat /etc/resolv.conf")
    lines = [line.split() for line in resolv.splitlines() if line.strip()]
    assert ["nameserver", "10.9.8.7"] in lines, resolv
    assert ["search", "edge.example"] in lines, resolv
    assert ["options", "ndots:3"] in lines, resolv
    assert [w for w in lines if w[0] == "nameserver"] == [["nameserver", "10.9.8.7"]], resolv
    assert exec_in(cluster, "hosty", "main", f"cat /proc/{edged_pid}/cmdline | tr '\\0' ' '")[1].find(
        "edge.edged") >= 0, "EdgeD's process is not visible in a hostPID pod"
    assert exec_in(cluster, "hosty", "main", "readlink /proc/self/ns/ipc")[1] == os.readlink("/proc/self/ns/ipc")

    # On the host's network: the node's hostname and resolver, with the pod's alias and nameserver added.
    wait_until(lambda: running(cluster, "hostnet"), timeout=60, what="pod hostnet Running")
    assert exec_in(cluster, "hostnet", "main", "hostname") == (0, socket.gethostname())
    assert "10.1.2.4\tcache" in exec_in(cluster, "hostnet", "main", "cat /etc/hosts")[1]
    node_servers = ResolvConf.parse(Path("/etc/resolv.conf").read_text()).nameservers
    code, resolv = exec_in(cluster, "hostnet", "main", "grep ^nameserver /etc/resolv.conf")
    assert resolv.split("\n") == [f"nameserver {s}" for s in (*node_servers, "10.9.8.6")]

    code, processes = exec_in(cluster, "shared", "a", "ps")
    assert code == 0
    assert "sleep 3601" in processes, processes  # b's process, seen from a
    # Gone before the session's podman is reset: the exit handlers of containers in a shared or the host's PID
    # namespace run after `pod rm` has returned, and would write podman's event log while it is being removed.
    for name in ("hosty", "shared", "hostnet"):
        cluster.core.delete_namespaced_pod(name, cluster.namespace)
    wait_until(lambda: not any(podman_containers(cluster, p) for p in ("hosty", "shared", "hostnet")),
               timeout=30, what="the pods gone from podman")


def metric(port: int, field: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("edgehive_pod_fields_refused_total{") and f'field="{field}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_refused_fields_fail_the_pod_by_name(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    edge_node = cluster.nodes[node][0]
    edge_node.stop("edged")  # again with metrics on, and a directory of seccomp profiles
    port = free_port()
    profiles = edge_node.workdir / "seccomp"
    profiles.mkdir()
    (profiles / "default.json").write_bytes(Path("/usr/share/containers/seccomp.json").read_bytes())
    edge_node.processes["edged"] = ManagedProcess(
        f"{node}-edged-metrics", [*edge_node.argv("edged"), "--metrics-listen", f"127.0.0.1:{port}",
                                  "--seccomp-dir", str(profiles)],
        edge_node.workdir / f"{node}-edged-metrics.log").start()
    create(cluster, "seccomp", node, [
        container("local", "sleep 3600", securityContext={
            "seccompProfile": {"type": "Localhost", "localhostProfile": "default.json"}}),
        container("unconfined", "sleep 3600", securityContext={"seccompProfile": {"type": "Unconfined"}})])
    create(cluster, "noprofile", node, [container("main", "sleep 3600", securityContext={
        "seccompProfile": {"type": "Localhost", "localhostProfile": "missing.json"}})])
    create(cluster, "selinux", node, [container("main", "sleep 3600", securityContext={
        "seLinuxOptions": {"level": "s0:c123,c456"}})])
    create(cluster, "nonroot", node, [container("main", "sleep 3600")], securityContext={"runAsNonRoot": True})
    create(cluster, "greedy", node, [container("main", "sleep 3600", resources={
        "requests": {"cpu": str((os.cpu_count() or 1) + 1)}})])
    create(cluster, "sysctl", node, [container("main", "sleep 3600")],
           securityContext={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]})

    def failed(name: str) -> Any:
        pod = cluster.pod(name)
        return pod if pod is not None and pod.status.phase == "Failed" else None

    pod = wait_until(lambda: failed("selinux"), timeout=60, what="pod selinux Failed")
    assert pod.status.reason == "FieldNotSupported"
    assert pod.status.message.startswith("spec.containers[0].securityContext.seLinuxOptions is not supported on "
                                         "this node: SELinux is not enabled on this host")
    pod = wait_until(lambda: failed("greedy"), timeout=60, what="pod greedy Failed")
    assert pod.status.reason == "OutOfcpu"
    assert pod.status.message.startswith("Node didn't have enough resource: cpu, requested: ")

    def waiting(name: str) -> Any:
        pod = cluster.pod(name)
        statuses = (pod.status.container_statuses or []) if pod is not None else []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting and \
            statuses[0].state.waiting.reason == "CreateContainerConfigError" else None

    state = wait_until(lambda: waiting("nonroot"), timeout=60, what="nonroot waiting on its config")
    assert state.message.startswith("container has runAsNonRoot and image will run as root (pod: ")
    wait_until(lambda: running(cluster, "sysctl"), timeout=60, what="pod sysctl Running")
    assert exec_in(cluster, "sysctl", "main", "cat /proc/sys/kernel/shm_rmid_forced") == (0, "1")

    wait_until(lambda: running(cluster, "seccomp"), timeout=60, what="pod seccomp Running")
    assert exec_in(cluster, "seccomp", "local", "grep ^Seccomp: /proc/self/status")[1].split()[1] == "2"
    assert exec_in(cluster, "seccomp", "unconfined", "grep ^Seccomp: /proc/self/status")[1].split()[1] == "0"
    pod = wait_until(lambda: failed("noprofile"), timeout=60, what="pod noprofile Failed")
    assert "seccompProfile is not supported on this node: the Localhost profile 'missing.json'" in pod.status.message

    field = "spec.containers[].securityContext.seLinuxOptions"
    wait_until(lambda: metric(port, field) == 1.0, timeout=20, what="the refusal counted once on /metrics",
               alive=edge_node.processes["edged"])
