"""What the resilience scenarios do to a fleet: pods that use ConfigMaps, devices, and a mixed stream of changes.

Each node runs a holder pod that uses the node's ConfigMaps (optional references, so
they may be created later and the node must still hold them), a few sleeper pods,
and two devices. A stream changes ConfigMaps, creates and deletes pods and sets
desired values through the API server while the nodes' devices publish readings on
their hosts; ``converged`` then says whether every node holds exactly the API's view
and every Device shows its last reading.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support import device_sim, devices
from tests.support.fleet import EdgeSite, Fleet

DEVICES = 2  # per node


def pod(name: str, node: str, configmaps: list[str] | None = None) -> dict[str, Any]:
    """A sleeping busybox pod on ``node``; ``configmaps`` become optional envFrom references."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": "localhost/busybox:latest", "imagePullPolicy": "Never",
                 "command": ["sleep", "36000"],
                 "envFrom": [{"configMapRef": {"name": cm, "optional": True}} for cm in configmaps or []]}]}}


def device_names(node: str) -> list[str]:
    return [f"{node}-dev-{i}" for i in range(DEVICES)]


def members(site: EdgeSite) -> set[str]:
    """The devices the node's DeviceTwin holds (read-only beside the running process)."""
    path = site.state / "data" / "devicetwin.db"
    if not path.exists():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return {name for (name,) in db.execute("SELECT name FROM device")}


@dataclass
class Workload:
    fleet: Fleet
    configmaps: int = 20
    """Per node, used by its holder pod."""
    sleepers: int = 2
    operations: int = 0
    readings: int = 0
    expected_devices: dict[str, str] = field(default_factory=dict)
    _pods: int = 0

    @property
    def nodes(self) -> list[str]:
        return list(self.fleet.sites)

    def cm_names(self, index: int) -> list[str]:
        return [f"cm-{index}-{j}" for j in range(self.configmaps)]

    def setup(self, create_configmaps: bool = True) -> None:
        """Pods, ConfigMaps (unless the scenario creates them later) and devices; returns once all are in place."""
        ns, core, custom = self.fleet.namespace, self.fleet.core, self.fleet.custom
        for i, node in enumerate(self.nodes):
            if create_configmaps:
                for name in self.cm_names(i):
                    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name),
                                                                          data={"VALUE": "0"}))
            core.create_namespaced_pod(ns, pod(f"holder-{i}", node, self.cm_names(i)))
            for _ in range(self.sleepers):
                self.new_pod(i, node)
        wait_until(lambda: devices.crds_ready(self.fleet.api.client), timeout=60, what="the device CRDs")
        custom.create_namespaced_custom_object(devices.GROUP, devices.VERSION, ns, "devicemodels",
                                               devices.model("thermo"))
        for node in self.nodes:
            for name in device_names(node):
                custom.create_namespaced_custom_object(devices.GROUP, devices.VERSION, ns, "devices",
                                                       devices.device(name, node, "20"))
        wait_until(lambda: not self.fleet.pod_differences(), timeout=120, what="every pod Running")
        for node, site in self.fleet.sites.items():
            wait_until(lambda s=site, n=node: members(s) >= set(device_names(n)), timeout=60,  # type: ignore[misc]
                       what=f"{node}'s devices known to its DeviceTwin")

    def new_pod(self, index: int, node: str) -> None:
        self._pods += 1
        self.fleet.core.create_namespaced_pod(self.fleet.namespace, pod(f"p-{index}-{self._pods}", node))
        self.operations += 1

    def delete_oldest_pod(self, index: int) -> None:
        mine = sorted((p for p in self.fleet.core.list_namespaced_pod(self.fleet.namespace).items
                       if p.metadata.name.startswith(f"p-{index}-")), key=lambda p: int(p.metadata.name.split("-")[2]))
        if mine:
            self.fleet.core.delete_namespaced_pod(mine[0].metadata.name, self.fleet.namespace, grace_period_seconds=0)
            self.operations += 1

    def set_desired(self, node: str, value: str) -> None:
        for name in device_names(node):
            self.fleet.custom.patch_namespaced_custom_object(
                devices.GROUP, devices.VERSION, self.fleet.namespace, "devices", name,
                {"spec": {"properties": [{"name": "setpoint", "desired": {"value": value}},
                                         {"name": "temperature", "reportToCloud": True}]}})
            self.operations += 1

    def start_devices(self, readings_per_node: int, seconds: float) -> list[ManagedProcess]:
        """Device simulators on every node's host; the expected last values are recorded."""
        sims = []
        for node, site in self.fleet.sites.items():
            names = device_names(node)
            sims.append(ManagedProcess(f"devices-{node}-{self.readings}", site.in_host(
                sys.executable, "-m", "tests.support.device_sim", "--port", str(site.edge_port),
                "--namespace", self.fleet.namespace, "--devices", ",".join(names),
                "--readings", str(readings_per_node), "--seconds", str(seconds), "--first", str(self.readings)),
                self.fleet.workdir / f"devices-{node}-{self.readings}.log").start())
            self.expected_devices.update(device_sim.last_values(names, readings_per_node, self.readings))
        self.readings += readings_per_node  # every device's next run starts beyond this one's numbers
        return sims

    def stream(self, seconds: float, stop: threading.Event | None = None) -> threading.Thread:
        """A mixed stream of API changes for ``seconds`` in a thread: ConfigMap updates, pods come and go,
        desired values; at about 10 changes a second."""
        def run() -> None:
            end = time.monotonic() + seconds
            step = 0
            while time.monotonic() < end and not (stop and stop.is_set()):
                i = step % len(self.nodes)
                node = self.nodes[i]
                name = self.cm_names(i)[step % self.configmaps]
                self.fleet.core.patch_namespaced_config_map(name, self.fleet.namespace,
                                                            {"data": {"VALUE": str(step)}})
                self.operations += 1
                if step % 10 == 0:
                    self.new_pod(i, node)
                    self.delete_oldest_pod(i)
                if step % 25 == 0:
                    self.set_desired(node, str(20 + step % 7))
                step += 1
                time.sleep(0.1)  # pacing the stream, not waiting for anything

        thread = threading.Thread(target=run, name="stream", daemon=True)
        thread.start()
        return thread

    def differences(self) -> list[str]:
        """Everything that still differs from the API server's view (empty once converged)."""
        view = self.fleet.api_view()
        problems = [f"{node}: {p}" for node in self.nodes for p in self.fleet.store_differences(node, view)]
        problems += self.fleet.pod_differences(view)
        for name, value in self.expected_devices.items():
            shown = self.fleet.device_reported(name)
            if shown != (value, "online"):
                problems.append(f"device {name} shows {shown}, last sent {value}")
        return problems

    def disrupt(self, action: Callable[[], None], what: str, stream_s: float = 8.0, readings: int = 400,
                converge_s: float = 90.0) -> tuple[float, float]:
        """Run a mixed stream with device readings, do ``action`` a third of the way in, wait for convergence.

        Returns the seconds from the action to convergence and from the end of the stream to it."""
        sims = self.start_devices(readings, stream_s)
        stream = self.stream(stream_s)
        time.sleep(stream_s / 3)  # into the middle of the stream: the moment of the fault is the scenario
        done_at = time.monotonic()
        action()
        stream.join(timeout=stream_s + 60)
        for sim in sims:
            wait_until(lambda s=sim: s.returncode() is not None, timeout=120,  # type: ignore[misc]
                       what=f"{sim.name} done", interval=0.5)
            assert sim.returncode() == 0, sim.log_tail()
        after_stream = self.wait_converged(converge_s, what)
        return time.monotonic() - done_at, after_stream

    def wait_converged(self, timeout: float, after: str) -> float:
        """Seconds until ``differences`` is empty; fails with what still differs at the deadline."""
        start = time.monotonic()
        problems: list[str] = []
        while time.monotonic() - start < timeout:
            problems = self.differences()
            if not problems:
                return time.monotonic() - start
            time.sleep(0.5)  # polling interval of the condition
        pytest.fail(f"not converged {timeout:.0f} s after {after}: " + "; ".join(problems[:8]) + "\n"
                    + self.evidence(problems[:3]), pytrace=False)

    def evidence(self, problems: list[str]) -> str:
        """The nodes' log lines about the objects named in ``problems``, and podman's view of the pods: what
        a failure report needs, since the logs live in a temporary directory that will be gone."""
        names = {word for problem in problems for word in problem.replace(":", " ").split()
                 if word.startswith(("p-", "holder-", "cm-")) or "-dev-" in word}
        lines = []
        for site in self.fleet.sites.values():
            for log_file in sorted((site.state / "logs").glob("*.log")):
                hits = [line for line in log_file.read_text(errors="replace").splitlines()
                        if any(name in line for name in names)]
                lines += [f"{log_file.name}: {line}" for line in hits[-12:]]
        pods = subprocess.run(["podman", "ps", "-a", "--filter", f"name={self.fleet.namespace}_",
                               "--format", "{{.Names}} {{.Status}} {{.PodName}}"],
                              capture_output=True, text=True, check=False, timeout=60).stdout
        return "\n".join(lines) + "\npodman ps -a:\n" + pods
