"""`edgehive up` (the README's main command) with the Python bridge: healthy children, restarts after kill -9, clean
Ctrl-C. The default link, mosquitto's own bridge, is test_edgehive_up_native.py's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.fixtures.processes import free_port, wait_until
from tests.support.cluster import wait_for_service_account


def status(state_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((state_dir / "status.json").read_text())
    return {row["name"]: row for row in data["children"]}


def all_healthy(state_dir: Path) -> dict[str, dict[str, Any]] | None:
    try:
        rows = status(state_dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return rows if rows and all(r["healthy"] for r in rows.values()) else None


def _node_ready(api: Any, name: str) -> bool:
    try:
        node = k8s.CoreV1Api(api).read_node(name)
    except k8s.exceptions.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _check_autonomy_webhook(api: Any) -> None:
    """The stack's admission webhook gives a pod that only edge nodes can run forever offline tolerations (the
    pod selects a label no node has, so it stays Pending and touches no node)."""
    core = k8s.CoreV1Api(api)
    wait_for_service_account(core, "default")
    pod = core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "autonomy-check"},
        "spec": {"nodeSelector": {"node-role.kubernetes.io/edge": "", "edgehive.test/nowhere": "x"},
                 "containers": [{"name": "main", "image": "localhost/busybox"}]}})
    try:
        offline = {t.key: t.toleration_seconds for t in pod.spec.tolerations or []
                   if t.key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")}
        assert offline == {"node.kubernetes.io/unreachable": None, "node.kubernetes.io/not-ready": None}
    finally:
        core.delete_namespaced_pod("autonomy-check", "default", grace_period_seconds=0)


def test_up_supervises_and_stops_cleanly(tmp_path: Path) -> None:
    cloud, edge = free_port(), free_port()
    # etcd's peer port is the next one: both are taken from free_port, so that no later free_port() hands the peer
    # port out again (they come in turn: the API server's port would otherwise be the peer's).
    etcd_port, peer_port = free_port(), free_port()
    while peer_port != etcd_port + 1:
        etcd_port, peer_port = peer_port, free_port()
    state = tmp_path / "state"
    with (tmp_path / "up.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgehive", "up", "--bridge", "python", "--cloud-listen", f"127.0.0.1:{cloud}",
             "--edge-listen", f"127.0.0.1:{edge}", "--state-dir", str(state), "--apiserver-port", str(free_port()),
             "--etcd-port", str(etcd_port), "--controller-manager-port", str(free_port()),
             "--scheduler-port", str(free_port()), "--stream-port", str(free_port())],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        rows = wait_until(lambda: all_healthy(state), timeout=90, what="every child of edgehive up healthy")
        assert set(rows) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                             "cloud-broker", "cloudhub", "edgecontroller", "devicecontroller", "router", "admission",
                             "edge-broker", "bridge-edge-1", "edgehub", "metamanager", "podman", "edged", "devicetwin",
                             "eventbus", "dmi", "stream", "edgestream", "metricsapi"}
        # What the README promises: kubectl --kubeconfig <printed path> get nodes shows edge-1 Ready.
        kubeconfig = state / "apiserver" / "kubeconfig"
        assert f"kubectl --kubeconfig {kubeconfig} get nodes" in (tmp_path / "up.out").read_text()
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        try:
            wait_until(lambda: _node_ready(api, "edge-1"), timeout=60, what="edge-1 Ready in the API server")
            _check_autonomy_webhook(api)
            _quick_start_deployment(api, kubeconfig)
        finally:
            api.close()
        pids = {name: row["pid"] for name, row in rows.items()}

        os.kill(pids["bridge-edge-1"], signal.SIGKILL)
        restarted = wait_until(
            lambda: (r := all_healthy(state)) and r["bridge-edge-1"]["restarts"] == 1 and r,
            timeout=60, what="the bridge restarted and healthy again")
        assert restarted["bridge-edge-1"]["pid"] != pids["bridge-edge-1"]
        assert restarted["bridge-edge-1"]["last_exit"] == -signal.SIGKILL
        assert restarted["cloud-broker"]["restarts"] == 0
        all_pids = [row["pid"] for row in restarted.values()]

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for pid in all_pids:
            assert not Path(f"/proc/{pid}").exists(), f"child {pid} outlived edgehive up"
        final = status(state)
        assert {row["state"] for row in final.values()} == {"stopped"}
        output = (tmp_path / "up.out").read_text()
        assert "COMPONENT" in output
        assert "bridge-edge-1" in output
    finally:
        stop_stack(proc)


def _kubectl(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def _host_pods(namespace: str) -> list[str]:
    """The machine's podman pods of ``namespace`` (edgehive up runs pods in the system's podman)."""
    result = subprocess.run(["podman", "pod", "ls", "--format", "{{.Name}}", "--filter",
                             f"label=io.edgehive.namespace={namespace}"], capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.split()


def _quick_start_deployment(api: Any, kubeconfig: Path, node: str = "edge-1") -> None:
    """The README's quick start: kubectl create deployment, scheduled on ``node`` by the stack's own scheduler and
    controller-manager; then kubectl delete namespace takes its pods off the machine's podman."""
    namespace = f"up-{uuid.uuid4().hex[:6]}"
    _kubectl(kubeconfig, "create", "namespace", namespace)
    wait_until(lambda: k8s.CoreV1Api(api).read_namespaced_service_account("default", namespace), timeout=30,
               what="the namespace's default ServiceAccount")
    try:
        _kubectl(kubeconfig, "-n", namespace, "create", "deployment", "d1", "--image=localhost/busybox", "--",
                 "sh", "-c", "echo hello from the edge; exec sleep 3600")
        _kubectl(kubeconfig, "-n", namespace, "patch", "deployment", "d1", "-p", json.dumps({"spec": {"template": {
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "busybox", "imagePullPolicy": "IfNotPresent"}]}}}}))
        _kubectl(kubeconfig, "-n", namespace, "rollout", "status", "deployment/d1", "--timeout=90s")
        pods = [p for p in k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=d1").items
                if p.metadata.deletion_timestamp is None]
        assert [(p.spec.node_name, p.status.phase) for p in pods] == [(node, "Running")]
        assert len(_host_pods(namespace)) >= 1
        # kubectl logs through the stream tunnel: the API server, the cloud stream server, the link, the node.
        wait_until(lambda: _kubectl(kubeconfig, "-n", namespace, "logs", "deployment/d1") == "hello from the edge\n",
                   timeout=30, what="kubectl logs deployment/d1")
        # kubectl top through the metrics API, which reads the node's resource metrics through the same tunnel.
        wait_until(lambda: node in _kubectl(kubeconfig, "top", "node", "--no-headers"), timeout=60, interval=1.0,
                   what=f"kubectl top node listing {node}")
        wait_until(lambda: "d1-" in _kubectl(kubeconfig, "-n", namespace, "top", "pod", "--no-headers"), timeout=60,
                   interval=1.0, what="kubectl top pod listing the deployment's pod")
    finally:
        _kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")
        wait_until(lambda: not _host_pods(namespace), timeout=60, what=f"{namespace}'s pods gone from podman")


def stop_stack(proc: subprocess.Popen[bytes]) -> None:
    """After a test of ``edgehive up``, whatever happened: a stack still running (a failed assertion) is stopped the
    normal way first, and killed if it does not stop within 30 s (its children follow, PR_SET_PDEATHSIG)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
