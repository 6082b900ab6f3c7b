"""The compose stack for real: podman-compose brings up every component in its own container.

One stack for the module (it takes about 20 s to be healthy): a Pod runs on the edge
node and a device's reading reaches its Device; the stack's admission webhook gives edge
pods offline tolerations without a time limit; a killed component is restarted by its
restart policy and the flow still works; ``down`` leaves nothing of ours behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from cloud.admission.review import OPT_OUT
from edgehive.compose import COMPOSE_FILE, HA, LOCAL_APISERVER, ROOT, ComposeStack, podman
from tests.containers.pods import NODE, run_pod
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support import devices

pytestmark = pytest.mark.slow

SERVICES = {"apiserver", "cloud-broker", "cloudhub", "edgecontroller", "devicecontroller", "router", "admission",
            "stream",
            "edge-1-broker", "edge-1-bridge", "edge-1-edgehub", "edge-1-metamanager", "edge-1-edged",
            "edge-1-devicetwin", "edge-1-eventbus", "edge-1-edgestream", "edge-1-dmi"}
HA_SERVICES = {"cloud-broker-2", "cloud-broker-3", "cloudhub-2", "cloudhub-3", "edgecontroller-2",
               "devicecontroller-2", "edge-1-node"}
"""What compose.ha.yml adds (test_compose_ha.py runs it)."""
UNREACHABLE, NOT_READY = "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    stack = ComposeStack(f"ehtest{uuid.uuid4().hex[:6]}", tmp_path_factory.mktemp("compose"))
    try:
        stack.up_healthy(timeout=120)
        yield stack
    finally:
        if stack.containers():
            stack.down()


@pytest.fixture(scope="module")
def kube(stack: ComposeStack) -> k8s.ApiClient:
    path = stack.copy_out("apiserver", "/etc/edgehive/kube/kubeconfig.host", stack.work_dir / "kubeconfig")
    return k8s_config.new_client_from_config(str(path))


def config_services(*files: Path) -> set[str]:
    argv = [sys.executable, "-m", "podman_compose"]
    for f in files:
        argv += ["-f", str(f)]
    result = subprocess.run([*argv, "config"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return set(parsed["services"])


def test_compose_files_validate() -> None:
    assert config_services(COMPOSE_FILE) == SERVICES
    assert config_services(COMPOSE_FILE, LOCAL_APISERVER) == SERVICES
    assert config_services(COMPOSE_FILE, LOCAL_APISERVER, HA) == SERVICES | HA_SERVICES
    assert config_services(COMPOSE_FILE, HA) == SERVICES | HA_SERVICES


def device_reading_reaches_status(stack: ComposeStack, kube: k8s.ApiClient, value: str) -> None:
    with TestClient("127.0.0.1", stack.ports["edge_broker"]) as dev:
        dev.publish(devices.topic("default", "twin/update"), devices.reading(f"r-{value}", value))
    wait_until(lambda: devices.reported(kube, "default", "temperature") == value, timeout=30,
               what=f"reading {value} in the Device status")


def test_pod_and_device_end_to_end(stack: ComposeStack, kube: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube)
    wait_until(lambda: any(c.type == "Ready" and c.status == "True"
                           for c in core.read_node(NODE).status.conditions or []), timeout=60, what=f"{NODE} Ready")
    run_pod(kube, "hello")
    devices.apply(kube, "default", NODE, setpoint="21")
    with TestClient("127.0.0.1", stack.ports["edge_broker"]) as dev:
        dev.subscribe(devices.topic("default", "twin/update/delta"))
        delta = devices.next_json(dev, devices.topic("default", "twin/update/delta"), timeout=30)
        assert delta["delta"] == {"setpoint": "21"}
    device_reading_reaches_status(stack, kube, "19.5")


def test_kubectl_logs_through_the_stream_server(stack: ComposeStack, kube: k8s.ApiClient) -> None:
    """The edge node advertises the stream service as its kubelet; the stack's API server calls it by that name
    with its kubelet client certificate, and the log comes up the node's link from its stream end and podman."""
    core = k8s.CoreV1Api(kube)
    run_pod(kube, "talker", command=("sh", "-c", "echo hello from edge-1; echo and goodbye; sleep 3600"))
    status = core.read_node(NODE).status
    assert {a.type: a.address for a in status.addresses}["Hostname"] == "stream"
    assert status.daemon_endpoints.kubelet_endpoint.port == 10350
    kubeconfig = stack.work_dir / "kubeconfig"  # the host's, copied out by the kube fixture

    def kubectl_logs(*args: str) -> str | None:
        result = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "logs", "talker", *args],
                                capture_output=True, text=True, timeout=30, check=False)
        return result.stdout if result.returncode == 0 else None

    wait_until(lambda: kubectl_logs() == "hello from edge-1\nand goodbye\n", timeout=60,
               what="kubectl logs of the edge pod through the stream server")
    assert kubectl_logs("--tail=1") == "and goodbye\n"
    assert stack.healthy("stream")
    assert stack.healthy("edge-1-edgestream")


def offline_tolerations(created: k8s.V1Pod) -> dict[str, int | None]:
    """The pod's unreachable and not-ready NoExecute tolerations: key -> tolerationSeconds (None: for ever)."""
    return {t.key: t.toleration_seconds for t in created.spec.tolerations or []
            if t.key in (UNREACHABLE, NOT_READY) and t.effect == "NoExecute"}


def test_admission_webhook_keeps_edge_pods_through_offline_spells(stack: ComposeStack, kube: k8s.ApiClient) -> None:
    """The admission service registered itself with the stack's API server, which calls it by its service name
    over TLS (a certificate from the cluster CA): a pod on the edge node gets forever offline tolerations instead
    of DefaultTolerationSeconds' 300 s, and still runs; a pod that opts out keeps the 300 s."""
    registrations = k8s.AdmissionregistrationV1Api(kube)
    registered = wait_until(lambda: registrations.read_mutating_webhook_configuration("edgehive-autonomy"),
                            timeout=60, what="the webhook's MutatingWebhookConfiguration")
    assert registered.webhooks[0].client_config.url == "https://admission:8443/mutate"
    kept = run_pod(kube, "autonomous")
    assert offline_tolerations(kept) == {UNREACHABLE: None, NOT_READY: None}
    evictable = run_pod(kube, "evictable", {OPT_OUT: "true"})
    assert offline_tolerations(evictable) == {UNREACHABLE: 300, NOT_READY: 300}
    assert stack.healthy("admission")


@pytest.mark.parametrize("service", ["cloudhub", "edge-1-metamanager", "edge-1-bridge"])
def test_crashed_component_is_restarted(stack: ComposeStack, kube: k8s.ApiClient, service: str) -> None:
    """A crash (the container's process SIGKILLed, as the OOM killer would) is a restart, by the policy.

    ``podman kill`` is not used: podman, like Docker, records it as a stop by the user and
    then does not apply the restart policy.
    """
    before = stack.restart_count(service)
    os.kill(stack.main_pid(service), signal.SIGKILL)
    wait_until(lambda: stack.restart_count(service) > before, timeout=30, what=f"{service} restarted")
    wait_until(lambda: stack.healthy(service), timeout=60, what=f"{service} healthy again")
    run_pod(kube, f"after-{service}")
    device_reading_reaches_status(stack, kube, f"{len(service)}.25")


def test_down_leaves_nothing_behind(stack: ComposeStack, kube: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube)
    names = [p.metadata.name for p in core.list_namespaced_pod("default").items]
    assert "hello" in names
    for name in names:
        core.delete_namespaced_pod(name, "default")
    wait_until(lambda: not core.list_namespaced_pod("default").items, timeout=60, what="the pods deleted")
    stack.down()
    assert stack.leftovers() == []
    pods = podman("pod", "ps", "--filter", f"label=io.edgehive.node={NODE}", "--format", "{{.Name}}").stdout
    assert pods.strip() == "", f"EdgeD's pods left behind: {pods}"
