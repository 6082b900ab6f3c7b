"""The edgehive system that ``bench edge``, ``bench cloud`` and ``bench twin`` start, each part its own process.

Brokers (the cloud's with users, the node's) and the bridge between them, the one a node of that broker kind
runs by default (``edgehive.stack.default_bridge``: mosquitto's own bridge inside the edge mosquitto, the bridge
process on amqtt); a podman service of the bench's own (its own storage root, the busybox image imported); one
node's edge components; and, for cloud and twin, a local API server with CloudHub, EdgeController and
DeviceController. All of it is stopped by the ExitStack it was started on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from broker.embedded import BrokerSettings
from broker.launch import broker_argv, wait_ready
from broker.nativebridge import bridge_sections
from broker.passwords import set_password
from cloud.kube import Kube
from edgehive.bench.harness import (
    BenchError,
    bench_apiserver,
    bench_workdir,
    free_port,
    process,
    wait_status,
    wait_until,
)
from edgehive.bench.shapedlink import ShapedLink
from edgehive.localcluster import STREAM_CERT, STREAM_KEY
from edgehive.stack import default_bridge
from runtime.url import BrokerUrl

NODE = "bench-edge"
CLOUD_USER, CLOUD_PASSWORD, NODE_PASSWORD = "cloud", "bench-cloud", "bench-node"
BUSYBOX_ROOTFS = Path(os.environ.get("EDGEHIVE_CACHE", "/opt/edgehive")) / "images" / "busybox-rootfs.tar"
IMAGE = "localhost/busybox:latest"
EDGE_COMPONENTS = ("edgehub", "metamanager", "edged", "devicetwin", "eventbus")
NAMESPACE = "bench"


@dataclass(frozen=True)
class Brokers:
    cloud: BrokerUrl
    """The cloud broker, as its admin user (what the cloud components and the bench use)."""
    edge: BrokerUrl
    bridge_cloud: tuple[str, int] | None = None
    """Where the bridge reaches the cloud broker, when not at ``cloud``'s address (over a shaped link)."""

    def bridge_argv(self) -> list[str]:
        """The bridge of NODE between the two, as the node's own user on the cloud broker."""
        host, port = self.bridge_cloud or (self.cloud.host, self.cloud.port)
        return [sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", str(self.edge),
                "--cloud", f"mqtt://{NODE}:{NODE_PASSWORD}@{host}:{port}"]


def start_brokers(stack: ExitStack, work: Path, broker: str, link: ShapedLink | None = None,
                  native: bool = False) -> Brokers:
    """The cloud broker (users: the cloud's and NODE's) and the node's broker, both ``broker`` kind, running.
    With ``link``, the bridge reaches the cloud broker across it. ``native``: the node's broker carries the link
    itself (mosquitto's own bridge, broker/nativebridge.py), so no bridge process is to be started."""
    passwd = work / "passwd"
    set_password(passwd, CLOUD_USER, CLOUD_PASSWORD)
    set_password(passwd, NODE, NODE_PASSWORD)
    cloud_port, edge_port, link_port = free_port(), free_port(), free_port()
    for sub in ("cloud", "edge"):
        (work / sub).mkdir()
    cloud_listen = (f"127.0.0.1:{cloud_port}", *((f"{link.host_address}:{link_port}",) if link else ()))
    stack.enter_context(process(broker_argv(broker, BrokerSettings(
        listen=cloud_listen, password_file=str(passwd)), work / "cloud"), work / "cloud.log"))
    bridge_cloud = (link.address, link.forward(link.host_address, link_port)) if link else None
    host, port = bridge_cloud or ("127.0.0.1", cloud_port)
    lines = bridge_sections(NODE, (BrokerUrl(host, port, username=NODE, password=NODE_PASSWORD),)) if native else []
    stack.enter_context(process(broker_argv(broker, BrokerSettings(listen=(f"127.0.0.1:{edge_port}",)),
                                            work / "edge", lines), work / "edge.log"))
    brokers = Brokers(BrokerUrl("127.0.0.1", cloud_port, username=CLOUD_USER, password=CLOUD_PASSWORD),
                      BrokerUrl("127.0.0.1", edge_port), bridge_cloud)
    if not (wait_ready(brokers.cloud, 20) and wait_ready(brokers.edge, 20)):
        raise BenchError(f"the {broker} brokers did not start; see {work}/cloud.log and edge.log")
    return brokers


@dataclass(frozen=True)
class Podman:
    """The bench's own podman service: its storage under the work directory, reset when the bench ends."""

    binary: str
    flags: tuple[str, ...]
    url: str

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *self.flags, *args], capture_output=True, text=True, check=check)

    def remove_pods(self, check: bool = False) -> None:
        self.run("pod", "rm", "--all", "--force", "--time", "0", check=check)

    def running_containers(self) -> int:
        """Containers EdgeD started (its label) that are running."""
        return len(self.run("ps", "--filter", "label=io.edgehive.container", "--format", "{{.ID}}").stdout.split())


def require_podman() -> str:
    """The podman binary; BenchError when it or the busybox image the benchmarks run is missing."""
    binary = shutil.which("podman")
    if binary is None or not BUSYBOX_ROOTFS.is_file():
        raise BenchError("the benchmark needs podman and the busybox image: run scripts/setup first")
    return binary


def start_podman(stack: ExitStack, work: Path) -> Podman:
    podman = Podman(require_podman(), ("--root", str(work / "pm/root"), "--runroot", str(work / "pm/run"),
                                       "--tmpdir", str(work / "pm/tmp")), f"unix://{work / 'podman.sock'}")
    podman.run("import", "--quiet", "--change", 'CMD ["/bin/sh"]', str(BUSYBOX_ROOTFS), IMAGE, check=True)
    stack.enter_context(process([podman.binary, *podman.flags, "system", "service", "--time=0", podman.url],
                                work / "podman.log"))
    stack.callback(podman.run, "system", "reset", "--force")
    stack.callback(podman.remove_pods)
    return podman


class EdgeProcesses:
    """NODE's edge components, each ``python -m`` as ``edgehive up`` runs them; started and stopped as a group."""

    def __init__(self, work: Path, edge_url: BrokerUrl, podman_url: str, bridge: str = "python") -> None:
        self.work = work
        self.edge_url = edge_url
        self.podman_url = podman_url
        self.bridge = bridge
        """What carries the link, which EdgeHub follows (``--bridge``)."""
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, with_edged: bool = True, with_stream: bool = False) -> None:
        common = ["--node", NODE, "--broker", str(self.edge_url)]
        argvs = [
            ["edge.edgehub", "--outbox", str(self.work / "outbox.db"), "--bridge", self.bridge],
            ["edge.metamanager", "--db", str(self.work / "meta.db")],
        ]
        if with_edged:
            argvs.append(["edge.edged", "--podman-url", self.podman_url, "--data-dir", str(self.work / "edged")])
            argvs.append(["edge.devicetwin", "--db", str(self.work / "devicetwin.db")])
            argvs.append(["edge.eventbus"])
        if with_stream:
            argvs.append(["edge.stream", "--podman-url", self.podman_url])
        for module, *extra in argvs:
            log = (self.work / f"{module}.log").open("ab")
            self.procs.append(subprocess.Popen([sys.executable, "-m", module, *common, *extra], stdout=log,
                                               stderr=subprocess.STDOUT))
            log.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


@dataclass
class System:
    """A whole edgehive system started by a benchmark, and what the benchmark needs to reach it."""

    work: Path
    kube: Kube
    cloud_url: BrokerUrl
    edge_url: BrokerUrl
    edge: EdgeProcesses
    podman: Podman
    kubeconfig: Path | None = None
    """The admin's kubeconfig of the local API server (for kubectl)."""


def start_system(stack: ExitStack, broker: str, say: Callable[[str], None], *,
                 control_plane: bool = False,
                 stream: bool = False, link: ShapedLink | None = None) -> System:
    """API server, brokers, CloudHub, EdgeController, DeviceController, bridge, a podman service and the edge
    components of node NODE, all stopped by ``stack``; namespace NAMESPACE exists.
    ``control_plane``: kube-controller-manager and kube-scheduler too (and the ServiceAccount admission plugin:
    a pod is admitted once its namespace has its service account). ``stream``: the cloud stream server and the
    node's stream end too, the node advertising the stream server as its kubelet (kubectl logs, exec, ...).
    ``link``: the bridge reaches the cloud broker across it (every cloud-edge byte crosses it). The bridge is the
    broker kind's default on a node: mosquitto's own, or the bridge process on amqtt."""
    require_podman()
    bridge = default_bridge(broker)
    work = bench_workdir(stack, "ehbench-")
    say(f"working in {work}; starting the API server, brokers, cloud and edge components")
    local = bench_apiserver(stack, work, control_plane)
    local.prepare()
    stack.enter_context(process(local.etcd_argv(), work / "etcd.log"))
    stack.enter_context(process(local.apiserver_argv(), work / "apiserver.log"))
    brokers = start_brokers(stack, work, broker, link, native=bridge == "native")
    wait_until(local.ready, 60, f"the API server (see {work}/apiserver.log)")
    if control_plane:
        stack.enter_context(process(local.controller_manager_argv(), work / "kube-controller-manager.log"))
        stack.enter_context(process(local.scheduler_argv(), work / "kube-scheduler.log"))
        wait_until(lambda: local.controller_manager_healthy() and local.scheduler_healthy(), 60,
                   f"kube-controller-manager and kube-scheduler (see their logs in {work})")
    env = {**os.environ, "EDGEHIVE_BROKER": brokers.cloud.with_password()}
    stream_port = free_port()
    for component in ("cloudhub", "edgecontroller", "devicecontroller", *(("stream",) if stream else ())):
        extra = [] if component == "cloudhub" else ["--kubeconfig", str(local.kubeconfig)]
        if stream and component == "edgecontroller":
            extra += ["--stream-address", f"127.0.0.1:{stream_port}"]
        if component == "stream":
            extra += ["--listen", f"127.0.0.1:{stream_port}", "--tls-cert", str(local.pki / STREAM_CERT),
                      "--tls-key", str(local.pki / STREAM_KEY), "--client-ca", str(local.pki / "ca.crt")]
        stack.enter_context(process([sys.executable, "-m", f"cloud.{component}", *extra], work / f"{component}.log",
                                    env))
    podman = start_podman(stack, work)
    if bridge == "python":
        stack.enter_context(process(brokers.bridge_argv(), work / "bridge.log"))
    edge = EdgeProcesses(work, brokers.edge, podman.url, bridge)
    stack.callback(edge.stop)
    edge.start(with_stream=stream)
    wait_status(brokers.edge, EDGE_COMPONENTS)
    kube = Kube.connect(str(local.kubeconfig))
    stack.callback(kube.close)
    kube.core.create_namespace({"metadata": {"name": NAMESPACE}})
    wait_until(lambda: kube.get_node(NODE) is not None, 60, "the edge node to register", poll=0.02)
    return System(work, kube, brokers.cloud, brokers.edge, edge, podman, local.kubeconfig)
