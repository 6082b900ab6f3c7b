"""From a clean cluster to a working edge node on another host, the way an operator does it.

``edgehive init`` on the cloud, ``edgehive gettoken``, then ``edgehive join`` and ``edgehive
edge`` in a second network namespace with its own address; every cloud link is TLS with
client certificates. A Pod runs there and a device's reading reaches its Device.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from schemas import topics
from schemas.envelope import Op, decode
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import tcp_ready
from tests.fixtures.mqtt import MqttError, TestClient
from tests.fixtures.netns import Host
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.support import devices

pytestmark = pytest.mark.slow

EDGEHIVE = [sys.executable, "-m", "edgehive"]


def run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(argv[:6])}... failed: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("bridge", ["python", "native"])
def test_init_token_join_then_pod_and_device(apiserver: ApiServer, netns_host: Callable[[], Host],
                                             tmp_path: Path, bridge: str) -> None:
    """``bridge``: the node's link as the bridge process, or as the edge mosquitto's own bridge (TLS with the
    node's certificate from edge.yaml's pki files in its conf)."""
    host = netns_host()
    node = f"joined-{uuid.uuid4().hex[:6]}"
    kubeconfig = str(apiserver.kubeconfig)
    broker_port, join_port, edge_port, device_port = free_port(), free_port(), free_port(), free_port()
    cloud = tmp_path / "cloud"
    init = [*EDGEHIVE, "init", "--kubeconfig", kubeconfig, "--broker-name", f"IP:{host.peer_address}",
            "--cloud-broker", f"127.0.0.1:{broker_port}", "--out", str(cloud)]
    run(init)
    assert "already there" in run(init)  # idempotent
    processes: list[ManagedProcess] = []

    def start(name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, tmp_path / f"{name}.log").start()
        processes.append(process)
        return process

    try:
        broker = start("cloud-broker", [
            sys.executable, "-m", "broker", "--listen", f"127.0.0.1:{broker_port}",
            "--listen", f"{host.peer_address}:{broker_port}", "--tls-cert", str(cloud / "broker.crt"),
            "--tls-key", str(cloud / "broker.key"), "--tls-ca", str(cloud / "ca.crt"), "--client-certs",
            "--crl-file", str(cloud / "crl.pem")])
        wait_until(lambda: tcp_ready("127.0.0.1", broker_port), timeout=20, what="the cloud broker", alive=broker)
        for component in ("cloudhub", "edgecontroller", "devicecontroller"):
            extra = [] if component == "cloudhub" else ["--kubeconfig", kubeconfig]
            start(component, [sys.executable, "-m", f"cloud.{component}", "--config", str(cloud / "cloud.yaml"),
                              *extra])
        joinserver = start("joinserver", [
            sys.executable, "-m", "cloud.joinserver", "--listen", f"{host.peer_address}:{join_port}",
            "--kubeconfig", kubeconfig, "--cloud-broker", f"mqtts://{host.peer_address}:{broker_port}"])
        wait_until(lambda: tcp_ready(host.peer_address, join_port), timeout=20, what="the join endpoint",
                   alive=joinserver)
        token = run([*EDGEHIVE, "gettoken", "--kubeconfig", kubeconfig, "--ttl", "10m"]).strip()

        state = tmp_path / "edge"
        out = run(host.argv(*EDGEHIVE, "join", "--cloud", f"{host.peer_address}:{join_port}", "--token", token,
                            "--node", node, "--state-dir", str(state)))
        assert f"node {node} joined" in out
        # Devices come from other hosts to a listener of their own, with a user; (the test also watches the
        # node's own broker from outside, which a real node keeps on loopback).
        device_users = tmp_path / "devices"
        run([*EDGEHIVE, "passwd", str(device_users), "thermo-dev", "--password", "dev-pw"])
        start("edge", host.argv(*EDGEHIVE, "edge", "--state-dir", str(state), "--edge-listen",
                                f"{host.address}:{edge_port}", "--device-listen", f"{host.address}:{device_port}",
                                "--device-users", str(device_users), "--bridge", bridge))

        core = k8s.CoreV1Api(apiserver.client)
        wait_until(lambda: any(c.type == "Ready" and c.status == "True"
                               for c in core.read_node(node).status.conditions or []), timeout=90,
                   what=f"node {node} Ready through the TLS link")
        namespace = f"join-{uuid.uuid4().hex[:6]}"
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": "localhost/busybox:latest", "imagePullPolicy": "Never",
                 "command": ["sleep", "3600"]}]}})
        wait_until(lambda: core.read_namespaced_pod("hello", namespace).status.phase == "Running", timeout=60,
                   what="the pod Running on the joined node")

        devices.apply(apiserver.client, namespace, node, setpoint="22")
        with TestClient(host.address, device_port, username="thermo-dev", password="dev-pw") as dev:
            dev.subscribe(devices.topic(namespace, "twin/update/delta"))
            delta = devices.next_json(dev, devices.topic(namespace, "twin/update/delta"), timeout=30)
            assert delta["delta"] == {"setpoint": "22"}
            dev.publish(devices.topic(namespace, "twin/update"), devices.reading("j1", "23.5"))
        wait_until(lambda: devices.reported(apiserver.client, namespace, "temperature") == "23.5", timeout=30,
                   what="the reading in the Device status")

        # The operator's view and hand: twin get shows the reading, twin set reaches the device as a delta.
        device = f"{namespace}/{devices.DEVICE}"
        twins = {t["property"]: t for t in json.loads(run([*EDGEHIVE, "twin", "get", device, "--kubeconfig",
                                                               kubeconfig, "--json"]))["twins"]}
        assert twins["temperature"]["reported"] == "23.5"
        assert twins["setpoint"]["desired"] == "22"
        with TestClient(host.address, device_port, username="thermo-dev", password="dev-pw") as dev:
            dev.subscribe(devices.topic(namespace, "twin/update/delta"))
            run([*EDGEHIVE, "twin", "set", device, "setpoint=24", "--kubeconfig", kubeconfig])
            wait_until(lambda: devices.next_json(dev, devices.topic(namespace, "twin/update/delta"),
                                                 timeout=2)["delta"] == {"setpoint": "24"}, timeout=30,
                       what="the new desired value at the device")
        described = json.loads(run([*EDGEHIVE, "node", "describe", node, "--config", str(cloud / "cloud.yaml"),
                                    "--kubeconfig", kubeconfig, "--json"]))
        assert described["link"]["connected"] is True
        assert described["identity"]["serial"]
        assert f"{namespace}/hello Running" in described["pods"]
        assert described["devices"] == [device]

        # edgehive status: the node, its link and its pod; then the link cut (the veth down, as a dead radio
        # would) and healed, each seen within one keepalive period plus the broker's grace (1.5 x 10 s).
        status = [*EDGEHIVE, "status", "--config", str(cloud / "cloud.yaml"), "--kubeconfig", kubeconfig, "--json"]

        def mine() -> dict[str, Any]:
            nodes = json.loads(run(status))["nodes"]
            return dict(next(n for n in nodes if n["name"] == node))

        wait_until(lambda: mine()["link"] == "up" and mine()["pods"] == {"Running": 1}, timeout=30,
                   what="edgehive status showing the node up with its pod")
        assert mine()["ready"] == "Ready"
        # Both bridges' wills reach CloudHub (the native one as a retained 0 on the node's hello), well before
        # its own keepalive timeout (40 s) would.
        cut_deadline = 25
        host.link(False)
        t0 = time.monotonic()
        wait_until(lambda: mine()["link"] == "down", timeout=cut_deadline,
                   what="edgehive status showing the link down")
        down_s = time.monotonic() - t0
        host.link(True)
        t0 = time.monotonic()
        wait_until(lambda: mine()["link"] == "up", timeout=25, what="edgehive status showing the link up again")
        print(f"\nstatus saw the cut after {down_s:.1f} s and the return after {time.monotonic() - t0:.1f} s")

        core.delete_namespaced_pod("hello", namespace)
        wait_until(lambda: not core.list_namespaced_pod(namespace).items, timeout=60, what="the pod deleted")
        wait_until(lambda: subprocess.run(["podman", "pod", "exists", f"{namespace}_hello"],
                                          check=False).returncode != 0, timeout=60,
                   what="EdgeD removing the pod's containers on the node")

        # Revoked: the bridge is cut off (the edge broker's retained link state turns down) and stays off.
        run([*EDGEHIVE, "node", "revoke", node, "--kubeconfig", kubeconfig, "--crl-out", str(cloud / "crl.pem")])
        native = bridge == "native"  # then the link's state is mosquitto's raw 1/0 on the hello topic
        with TestClient(host.address, edge_port) as watch:
            watch.subscribe(topics.link_hello(node) if native else topics.link_state(node))
            wait_until(lambda: _link_down(watch, native), timeout=30, what="the revoked node's link down")
            with pytest.raises(MqttError):  # quiet for 5 s, and never "up" again: the bridge cannot reconnect
                _never_up(watch, native)
    finally:
        for process in reversed(processes):
            process.stop(timeout=30)


def _link_down(client: TestClient, native: bool) -> bool:
    message = client.expect(timeout=1)
    if native:
        return message.payload == topics.NATIVE_DOWN
    return decode(message.payload).op == Op.DISCONNECTED


def _never_up(client: TestClient, native: bool) -> None:
    """Read link states until none comes for 5 s (MqttError); an "up" among them fails the test."""
    while True:
        message = client.expect(timeout=5)
        if native:
            assert message.payload != topics.NATIVE_UP, "the revoked node reconnected"
        else:
            assert decode(message.payload).op != Op.CONNECTED, "the revoked node reconnected"
