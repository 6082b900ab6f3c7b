"""``edgehive up`` as the README runs it, on its defaults: no bridge process, the edge mosquitto's own bridge carrying
the node's link (``--bridge native``, the default on mosquitto).

The twin of test_edgehive_up.py (the Python bridge): every child healthy (the edge broker only once its link is
up), its node registers and a deployment's pod runs on it (resources down, statuses up, kubectl logs through the stream
connection); the edge broker killed -9 comes back with its link, without a restart of anything else; Ctrl-C stops
everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import config as k8s_config

from tests.fixtures.processes import free_port, wait_until
from tests.integration.test_edgehive_up import (
    _node_ready,
    _quick_start_deployment,
    all_healthy,
    status,
    stop_stack,
)

pytestmark = pytest.mark.slow


NODE = "edge-native"
"""Not the default edge-1: test_edgehive_up.py's stack may run on the machine's podman meanwhile, and EdgeD
refuses a node whose name another EdgeD serves there (edge/edged/nodeclaim.py)."""


def test_up_with_the_native_bridge_runs_a_pod_and_survives_an_edge_broker_kill(tmp_path: Path) -> None:
    cloud, edge = free_port(), free_port()
    etcd_port, peer_port = free_port(), free_port()
    while peer_port != etcd_port + 1:  # as test_edgehive_up: the peer port is the next one
        etcd_port, peer_port = peer_port, free_port()
    state = tmp_path / "state"
    with (tmp_path / "up.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgehive", "up", "--cloud-listen", f"127.0.0.1:{cloud}",
             "--edge-listen", f"127.0.0.1:{edge}", "--state-dir", str(state), "--apiserver-port", str(free_port()),
             "--etcd-port", str(etcd_port), "--controller-manager-port", str(free_port()),
             "--scheduler-port", str(free_port()), "--stream-port", str(free_port()), "--node", NODE],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        rows = wait_until(lambda: all_healthy(state), timeout=90, what="every child of edgehive up healthy")
        assert "edge-broker" in rows
        assert not any(name.startswith("bridge") for name in rows)
        conf = (state / "edge-broker" / "mosquitto" / "mosquitto.conf")
        assert f"connection edgehive-{NODE}\n" in conf.read_text()
        assert conf.stat().st_mode & 0o777 == 0o600  # it holds the node's password
        kubeconfig = state / "apiserver" / "kubeconfig"
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        try:
            wait_until(lambda: _node_ready(api, NODE), timeout=60, what=f"{NODE} Ready in the API server")
            _quick_start_deployment(api, kubeconfig, NODE)
        finally:
            api.close()

        pids = {name: row["pid"] for name, row in rows.items()}
        os.kill(pids["edge-broker"], signal.SIGKILL)
        restarted = wait_until(
            lambda: (r := all_healthy(state)) and r["edge-broker"]["restarts"] == 1 and r,
            timeout=60, what="the edge broker restarted, its link up again")
        assert restarted["edge-broker"]["pid"] != pids["edge-broker"]
        assert restarted["edgehub"]["restarts"] == 0
        assert restarted["cloud-broker"]["restarts"] == 0
        all_pids = [row["pid"] for row in restarted.values()]

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for pid in all_pids:
            assert not Path(f"/proc/{pid}").exists(), f"child {pid} outlived edgehive up"
        assert {row["state"] for row in status(state).values()} == {"stopped"}
    finally:
        stop_stack(proc)
