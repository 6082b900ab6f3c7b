"""``edgehive up --broker nats --replicas 3``: three NATS members and three CloudHub replicas on one machine, a
pod reaches the edge node, and the node's link comes back when the member its bridge is on is killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.fixtures.nats import require_nats
from tests.fixtures.processes import free_port, wait_until
from tests.integration.test_edgehive_up import _node_ready, all_healthy, status, stop_stack
from tests.support.cluster import wait_for_service_account
from tests.support.fleet import podman_pods

REPLICAS = 3


def _free_block(count: int) -> int:
    """The first of ``count`` consecutive free ports, all taken from free_port so that no later free_port() hands
    one of them out again (it gives ports in turn, skipping taken ones)."""
    block = [free_port()]
    while len(block) < count:
        port = free_port()
        block = [*block, port] if port == block[-1] + 1 else [port]
    return block[0]


BRIDGE_LOG = {"python": "bridge-{node}.log", "native": "edge-broker.log"}
CONNECTED = {
    "python": r"bridge-{node}-cloud: connected to mqtt://{node}@127\.0\.0\.1:(\d+)",
    # mosquitto logs its attempts; while the link is up, the last attempt is the member it is on.
    "native": r"Connecting bridge (?:\(step 1\) )?edgehive-{node} \(127\.0\.0\.1:(\d+)\)",
}


def _bridge_ports(log: Path, bridge: str, node: str) -> list[int]:
    """The cloud members ``node``'s bridge connected to (native: tried), in turn, from its log."""
    pattern = CONNECTED[bridge].replace("{node}", re.escape(node))
    return [int(p) for p in re.findall(pattern, log.read_text(errors="replace"))]


def _bridge_port(log: Path, bridge: str, node: str) -> int | None:
    """The cloud member ``node``'s bridge last connected to, from its log."""
    ports = _bridge_ports(log, bridge, node)
    return ports[-1] if ports else None


def _unwell(state: Path, victim: str) -> str:
    """What a heal that did not come shows: the children not healthy (and the victim), each with its log's end."""
    rows = status(state)
    shown = [row for name, row in rows.items() if not row["healthy"] or name == victim]
    parts = []
    for row in shown:
        log = state / "logs" / f"{row['name']}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        parts.append(f"{row}\n" + "\n".join(f"    {line[:300]}" for line in tail))
    return "\n".join(parts)


def _run_pod(api: Any, node: str, namespace: str, name: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "main", "image": "localhost/busybox", "imagePullPolicy": "IfNotPresent",
                                 "command": ["sleep", "3600"]}]}})
    wait_until(lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running", timeout=90,
               interval=0.5, what=f"pod {name} Running on {node}")


def _healthy(proc: subprocess.Popen[bytes], tmp_path: Path) -> dict[str, dict[str, Any]] | None:
    assert proc.poll() is None, f"edgehive up exited: {(tmp_path / 'up.out').read_text()[-2000:]}"
    return all_healthy(tmp_path / "state")


@pytest.mark.parametrize("bridge", ["python", "native"])
def test_up_nats_replicas(tmp_path: Path, bridge: str) -> None:
    """``bridge``: the node's link as the bridge process, or as the edge mosquitto's own bridge (the members in its
    ``address`` line, QoS 0 down, its hello the notification and EdgeHub's repeat)."""
    require_nats()
    mqtt = _free_block(3 * REPLICAS)  # the members' MQTT ports, then their NATS client and route ports
    nats_port = mqtt + REPLICAS
    etcd_port = _free_block(2)  # etcd's peer port is the next one
    state = tmp_path / "state"
    namespace = f"upnats-{uuid.uuid4().hex[:6]}"
    # A name of its own: the other edgehive up tests may run their stacks on the machine's podman meanwhile,
    # and EdgeD refuses a node whose name another EdgeD serves there (edge/edged/nodeclaim.py).
    node = f"nats-{bridge}"
    with (tmp_path / "up.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgehive", "up", "--broker", "nats", "--replicas", str(REPLICAS),
             "--cloud-listen", f"127.0.0.1:{mqtt}", "--nats-port", str(nats_port),
             "--edge-listen", f"127.0.0.1:{free_port()}", "--state-dir", str(state),
             "--apiserver-port", str(free_port()), "--etcd-port", str(etcd_port),
             "--controller-manager-port", str(free_port()), "--scheduler-port", str(free_port()),
             "--stream-port", str(free_port()), "--bridge", bridge, "--node", node],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        rows = wait_until(lambda: _healthy(proc, tmp_path), timeout=150, interval=0.5,
                          what="every child of edgehive up --broker nats healthy")
        members = {f"nats-{i + 1}" for i in range(REPLICAS)}
        replicas = {f"{c}-{i + 1}" for i in range(REPLICAS) for c in ("cloudhub", "edgecontroller", "devicecontroller")}
        assert members | replicas <= set(rows)
        assert "cloud-broker" not in rows
        assert "cloudhub" not in rows
        assert (state / "nats" / "route-secret").stat().st_mode & 0o077 == 0
        assert all((state / "nats" / m / "nats" / "data").is_dir() for m in members)  # JetStream stores

        kubeconfig = state / "apiserver" / "kubeconfig"
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        core = k8s.CoreV1Api(api)
        try:
            # The stack's own node did not join (no Node made by the join endpoint): its owner among the replicas
            # knows of it from its bridge's hello and serves its first registration, which creates the Node.
            wait_until(lambda: _node_ready(api, node), timeout=90, what=f"{node} Ready in the API server")
            core.create_namespace({"metadata": {"name": namespace}})
            wait_for_service_account(core, namespace)
            _run_pod(api, node, namespace, "before")

            # Kill the member the node's bridge is on: the bridge tries the other members in turn and connects
            # again, and the node is served again. Which member takes it is NATS's to say: while JetStream elects
            # new leaders (seconds) every member refuses MQTT connects ("loading session record ... timeout"),
            # and the killed one, restarted by edgehive up meanwhile, may be the first to take the bridge back.
            log = state / "logs" / BRIDGE_LOG[bridge].format(node=node)
            port = wait_until(lambda: _bridge_port(log, bridge, node), timeout=10,
                              what="the bridge's cloud member in its log")
            connects = len(_bridge_ports(log, bridge, node))
            victim = f"nats-{port - mqtt + 1}"
            os.kill(rows[victim]["pid"], signal.SIGKILL)
            wait_until(lambda: len(_bridge_ports(log, bridge, node)) > connects, timeout=30, interval=0.2,
                       what="the bridge connected to a member again")
            lost = (f"127.0.0.1:{port} connection lost" if bridge == "python"  # it lost that one
                    else f"Client edgehive-bridge-{node}-local closed its connection")
            assert lost in log.read_text(errors="replace")
            _run_pod(api, node, namespace, "after")
            try:
                healed = wait_until(lambda: (r := all_healthy(state)) and r[victim]["restarts"] == 1 and r,
                                    timeout=90, what=f"{victim} restarted and every child healthy again")
            except pytest.fail.Exception as exc:
                raise AssertionError(f"{exc}\n{_unwell(state, victim)}") from None
            link = "edge-broker" if bridge == "native" else f"bridge-{node}"
            assert healed[link]["restarts"] == 0
            assert bridge == "python" or not any(name.startswith("bridge") for name in healed)
        finally:
            core.delete_namespace(namespace)
            api.close()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        stop_stack(proc)
        # The stack stops right after the namespace is deleted, before EdgeD can remove its pods: removed here, or
        # they run on in podman after the test (found left by a whole-suite run).
        for name in podman_pods(namespace):
            subprocess.run(["podman", "pod", "rm", "-f", "-t", "0", name], capture_output=True, check=False)
