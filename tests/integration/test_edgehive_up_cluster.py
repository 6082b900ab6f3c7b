"""`edgehive up --kubeconfig` on a cluster of the user's own (here the session's API server, which checks kubelets'
certificates against its CA): with --stream-address, the stack runs the stream server for it and the edge node's
pod logs come through `kubectl logs`."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from kubernetes import client as k8s

from tests.fixtures.apiserver import ApiServer
from tests.fixtures.processes import free_port, wait_until
from tests.integration.test_edgehive_up import all_healthy, stop_stack


def _up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgehive", "up", "--state-dir", str(tmp_path / "state"), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_stream_flags_are_checked_before_anything_starts(tmp_path: Path) -> None:
    without_cluster = _up(tmp_path, "--stream-address", "127.0.0.1:10350")
    assert without_cluster.returncode == 2
    assert "--stream-address is for your own cluster (--kubeconfig)" in without_cluster.stderr
    half = _up(tmp_path, "--kubeconfig", "/nowhere", "--stream-address", "h:1", "--stream-serving-ca", "/ca.crt")
    assert half.returncode == 2
    assert "--stream-serving-ca and --stream-serving-ca-key go together" in half.stderr
    assert not (tmp_path / "state").exists()


def test_up_on_a_users_cluster_serves_kubectl_logs(apiserver: ApiServer, tmp_path: Path) -> None:
    node, namespace = f"edge-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    pki = apiserver.ca_file.parent
    stream_port = free_port()
    state = tmp_path / "state"
    with (tmp_path / "up.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgehive", "up", "--kubeconfig", str(apiserver.kubeconfig), "--node", node,
             "--cloud-listen", f"127.0.0.1:{free_port()}", "--edge-listen", f"127.0.0.1:{free_port()}",
             "--state-dir", str(state), "--stream-address", f"127.0.0.1:{stream_port}",
             "--stream-serving-ca", str(pki / "ca.crt"), "--stream-serving-ca-key", str(pki / "ca.key")],
            stdout=out, stderr=subprocess.STDOUT)
    core = k8s.CoreV1Api(apiserver.client)
    try:
        rows = wait_until(lambda: all_healthy(state), timeout=90, what="every child of edgehive up healthy")
        assert {"stream", "edgestream", "edgecontroller"} <= set(rows)
        assert "kube-apiserver" not in rows
        # Port 0 is a Node that advertises no endpoint yet (wait_until takes 0 as an answer, so say False).
        status = wait_until(lambda: bool((s := core.read_node(node).status).daemon_endpoints.kubelet_endpoint.port)
                            and s, timeout=60, what="the node advertising the stream server")
        assert status.daemon_endpoints.kubelet_endpoint.port == stream_port
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": "localhost/busybox:latest", "imagePullPolicy": "Never",
                 "command": ["sh", "-c", "echo hello from your cluster; sleep 3600"]}]}})

        def logs() -> str:
            return subprocess.run(["kubectl", "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace, "logs",
                                   "talker"], capture_output=True, text=True, timeout=30, check=False).stdout

        wait_until(lambda: logs() == "hello from your cluster\n", timeout=90, what="kubectl logs of the edge pod")
        core.delete_namespaced_pod("talker", namespace, grace_period_seconds=0)
        wait_until(lambda: subprocess.run(["podman", "pod", "exists", f"{namespace}_talker"], check=False,
                                          timeout=60).returncode != 0,
                   timeout=60, what="EdgeD removing the pod from the machine's podman")
    finally:
        stop_stack(proc)
        subprocess.run(["podman", "pod", "rm", "-f", "-t", "0", f"{namespace}_talker"], capture_output=True,
                       check=False)
