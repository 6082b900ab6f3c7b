"""A whole edge node on real parts: cloud and edge brokers, the bridge, EdgeHub, MetaManager, EdgeD."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from podman.errors import PodmanError

from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Op, decode
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient
from tests.fixtures.podman import Podman
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.cloud import FakeCloud
from tests.support.natns import entered

NODE = "edge-1"
USERS = {"cloud": "cloud-pw", NODE: "node-pw"}
EDGE_COMPONENTS = ("edgehub", "metamanager", "edged", "devicetwin", "eventbus", "stream")


@dataclass
class EdgeNode:
    cloud_broker: Broker
    edge_broker: Broker
    podman: Podman
    workdir: Path
    node: str = NODE
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    starts: int = 0
    netns: str | None = None
    """The network namespace the node's processes run in (tests/support/natnode.py), None for this one."""

    def argv(self, component: str) -> list[str]:
        common = ["--node", self.node, "--broker", self.edge_broker.url(), "--log-level", "info"]
        extra = {
            "edgehub": ["--outbox", str(self.data / "outbox.db"), "--keepalive-s", "3", "--resend-s", "3"],
            "metamanager": ["--db", str(self.data / "meta.db")],
            "edged": ["--podman-url", self.podman.base_url, "--data-dir", str(self.data / "edged"),
                      "--node-status-s", "2"],
            "devicetwin": ["--db", str(self.data / "devicetwin.db"), "--report-interval-s", "0.2"],
            "eventbus": [],
            # DMI is started by the tests that use it (tests/integration/test_dmi.py), not by start_all.
            "dmi": ["--socket", str(self.dmi_socket), "--mappers-file", str(self.data / "dmi-mappers.json")],
            "stream": ["--podman-url", self.podman.base_url, "--idle-timeout-s", "9"],
        }[component]
        inside = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
        return [*inside, sys.executable, "-m", f"edge.{component}", *common, *extra]

    def start(self, component: str) -> ManagedProcess:
        self.starts += 1
        process = ManagedProcess(f"{self.node}-{component}-{self.starts}", self.argv(component),
                                 self.workdir / f"{self.node}-{component}-{self.starts}.log").start()
        self.processes[component] = process
        with entered(self.netns), TestClient(self.edge_broker.host, self.edge_broker.port) as watcher:
            watcher.subscribe(topics.status(component))
            wait_until(lambda: status_up(watcher, process.pid), timeout=30, what=f"{component} up",
                       alive=process)
        return process

    @property
    def data(self) -> Path:
        return self.workdir if self.node == NODE else self.workdir / self.node

    @property
    def dmi_socket(self) -> Path:
        return self.data / "dmi.sock"

    def start_all(self) -> None:
        for component in EDGE_COMPONENTS:
            self.start(component)

    def stop(self, component: str) -> None:
        self.processes[component].stop()

    def kill(self, component: str) -> None:
        self.processes[component].kill()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop()


def status_up(watcher: TestClient, pid: int) -> bool:
    envelope = decode(watcher.expect().payload)
    return bool(envelope.body.get("state") == "up" and envelope.body.get("pid") == pid)


@dataclass
class Link:
    """The bridge process between the two brokers, stoppable to cut the link."""

    argv: list[str]
    workdir: Path
    edge_broker: Broker
    node: str = NODE
    process: ManagedProcess | None = None
    starts: int = 0
    netns: str | None = None
    """Where the edge broker listens (``argv`` says where the bridge runs)."""

    def up(self) -> None:
        self.starts += 1
        self.process = ManagedProcess(f"bridge-{self.node}-{self.starts}", self.argv,
                                      self.workdir / f"bridge-{self.node}-{self.starts}.log")
        self.process.start()
        self.wait_state(Op.CONNECTED)

    def down(self) -> None:
        assert self.process is not None
        self.process.stop()
        self.wait_state(Op.DISCONNECTED)

    def wait_state(self, op: Op) -> None:
        with entered(self.netns), TestClient(self.edge_broker.host, self.edge_broker.port) as client:
            client.subscribe(topics.link_state(self.node))
            wait_until(lambda: decode(client.expect().payload).op == op, timeout=30, what=f"link state {op.value}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def edge_node(edgehive_broker: BrokerFactory, podman: Podman, tmp_path: Path) -> Iterator[tuple[EdgeNode, Link,
                                                                                                FakeCloud]]:
    cloud_broker = edgehive_broker("amqtt", users=USERS)
    edge_broker = edgehive_broker("amqtt")
    link = Link([sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", edge_broker.url(),
                 "--cloud", cloud_broker.url(NODE, USERS[NODE])], tmp_path, edge_broker)
    cloud = FakeCloud(BrokerUrl.parse(cloud_broker.url("cloud", USERS["cloud"])), NODE).start()
    link.up()
    node = EdgeNode(cloud_broker, edge_broker, podman, tmp_path)
    try:
        node.start_all()
        yield node, link, cloud
    finally:
        node.stop_all()
        link.stop()
        cloud.close()
        remove_pods(podman, tmp_path)


def remove_pods(podman: Podman, data: Path | None = None) -> None:
    """Leave the session's podman service empty for the next test, and unmount what EdgeD mounted below
    ``data`` (the tmpfs of a Memory emptyDir outlives EdgeD by design, as it does on a node)."""
    with podman.client() as client:
        for pod in client.pods.list():
            # Killed, not asked: a test's `sleep` ignores SIGTERM, and podman waits 10 s per container for it.
            with contextlib.suppress(PodmanError):
                pod.stop(timeout=0)
            pod.remove(force=True)
    if data is not None:
        unmount_below(data)


def unmount_below(root: Path) -> None:
    """Unmount every mount point below ``root``, the deepest first."""
    prefix = str(root.resolve()) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)  # a busy one goes when its last user does
