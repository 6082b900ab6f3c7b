"""A cloud and several edge nodes on separate hosts, set up the way an operator does it.

The cloud side (its broker with client certificates, CloudHub, EdgeController,
DeviceController, the join endpoint) runs in this network namespace next to the API
server; every edge node joins with ``edgehive join`` and runs ``edgehive edge`` in a
network namespace of its own, with its own address, reaching the cloud over a veth
pair. A partition is the veth taken down, as a dead radio link would be: no process
is told. Devices are simulators inside each node's namespace (devices are local).

What the scenarios check is read from the real stores: MetaManager's SQLite file
(read-only), podman's pods, and the API server's objects and Device statuses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from edgehive.stack import DEFAULT_EDGE_BROKER, resolve_bridge
from schemas.podrefs import config_refs
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import tcp_ready
from tests.fixtures.netns import Host
from tests.fixtures.processes import (
    ManagedProcess,
    command_line,
    free_port,
    kill_processes_mentioning,
    processes_mentioning,
    wait_until,
)
from tests.support import devices
from tests.support.podnetns import release_lost_pod_networks

EDGEHIVE = [sys.executable, "-m", "edgehive"]
CLOUD_COMPONENTS = ("cloudhub", "edgecontroller", "devicecontroller")
EDGE_BROKER = os.environ.get("EDGEHIVE_FLEET_EDGE_BROKER") or DEFAULT_EDGE_BROKER
"""The nodes' broker kind (``edgehive edge --edge-broker``): the default one, unless the variable names the other
to run the scenarios on it."""
EDGE_BRIDGE = os.environ.get("EDGEHIVE_FLEET_BRIDGE") or None
"""The nodes' link (``edgehive edge --bridge``): the edge broker's default (mosquitto's own bridge on mosquitto, the
Python bridge on amqtt), unless the variable names one."""


def run(argv: list[str], timeout: float = 120) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv[:6])}... failed: {result.stdout}{result.stderr}"
    return result.stdout


@dataclass
class EdgeSite:
    """One edge node on its own host: the ``edgehive edge`` supervisor and everything it runs."""

    node: str
    host: Host
    state: Path
    edge_port: int
    workdir: Path
    process: ManagedProcess | None = None
    starts: int = 0
    data_tmpfs_mb: int | None = None
    """The node's data directory (its SQLite stores, pod volumes) on a tmpfs this small: a disk that can fill."""
    edge_broker: str = EDGE_BROKER

    @property
    def bridge(self) -> str:
        """What carries the node's link, as ``edgehive edge`` chooses it (refused by name if it cannot be)."""
        return resolve_bridge(EDGE_BRIDGE, self.edge_broker)

    @property
    def broker_marker(self) -> str:
        """What names the node's broker among the processes on its host (for ``pid_of``): amqtt runs as
        ``python -m broker --listen``, mosquitto with its configuration under the node's state directory."""
        return "-m broker --listen" if self.edge_broker == "amqtt" else str(self.state / "edge-broker")

    def mount_data(self) -> None:
        if self.data_tmpfs_mb is not None:
            data = self.state / "data"
            data.mkdir(parents=True, exist_ok=True)
            run(["mount", "-t", "tmpfs", "-o", f"size={self.data_tmpfs_mb}m", "edgehive-test", str(data)])

    def unmount_data(self) -> None:
        """Unmount the data tmpfs so that no run leaves one behind.

        umount says busy while the node's SIGKILLed processes are being reaped, and for longer while podman
        tears down the pods' containers, whose mount namespaces hold their volumes' bind mounts; after a
        while the mount is detached lazily (the kernel frees it when its last user is gone). Whether every
        process went is the teardown's own check, not this one's."""
        if self.data_tmpfs_mb is None:
            return
        data = str(self.state / "data")

        def unmounted() -> bool:
            if subprocess.run(["mountpoint", "-q", data], check=False).returncode != 0:
                return True
            return subprocess.run(["umount", data], capture_output=True, check=False).returncode == 0

        deadline = time.monotonic() + 30
        while not unmounted():
            if time.monotonic() > deadline:
                lazy = subprocess.run(["umount", "--lazy", data], capture_output=True, text=True, check=False)
                assert lazy.returncode == 0, f"umount --lazy {data}: {lazy.stderr.strip()}"
                return
            time.sleep(0.2)  # polling the mount until its users are gone, with the deadline above

    def start(self) -> ManagedProcess:
        self.starts += 1
        self.process = ManagedProcess(
            f"edge-{self.node}-{self.starts}",
            self.host.argv(*EDGEHIVE, "edge", "--state-dir", str(self.state), "--edge-listen",
                           f"127.0.0.1:{self.edge_port}", "--edge-broker", self.edge_broker, "--bridge", self.bridge),
            self.workdir / f"edge-{self.node}-{self.starts}.log").start()
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)

    def healthy_since(self, since: float) -> bool:
        """``edgehive edge`` reports every child healthy, in a status written after ``since`` (time.time())."""
        try:
            status = json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(status["ts"] >= since and all(child["healthy"] for child in status["children"]))

    def unhealthy_evidence(self, lines: int = 25) -> str:
        """The children ``edgehive edge`` last called unhealthy, each with the end of its own log: what a report
        of a node that did not come up needs, since the supervisor's log says only that a child is waiting."""
        try:
            status = json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError) as exc:
            return f"(no status: {exc})"
        out = []
        for child in status["children"]:
            if child["healthy"]:
                continue
            out.append(f"{child['name']}: {child['state']}, pid {child['pid']}, restarts {child['restarts']}")
            log_file = self.state / "logs" / f"{child['name']}.log"
            with contextlib.suppress(OSError):
                out.extend(f"  {line}" for line in log_file.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def in_host(self, *command: str) -> list[str]:
        return self.host.argv(*command)

    def pids(self) -> list[int]:
        """Every process on this node's host (its network namespace): what a power cut would stop."""
        out = subprocess.run(["ip", "netns", "pids", self.host.name], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def pid_of(self, marker: str) -> int | None:
        """The process on this host whose command line contains ``marker`` (e.g. ``-m edge.metamanager``)."""
        for pid in self.pids():
            cmdline = command_line(pid)
            if cmdline is not None and marker in cmdline and "nsenter" not in cmdline:
                return pid
        return None

    def stored(self) -> dict[str, tuple[str, str | None]]:
        """MetaManager's store: key -> (resourceVersion, uid), read-only beside the running process."""
        path = self.state / "data" / "metamanager.db"
        if not path.exists():
            return {}
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return {key: (rv, uid) for key, rv, uid in db.execute("SELECT key, rv, uid FROM resource")}


@dataclass(frozen=True)
class ApiView:
    """One listing of the test namespace (kubernetes client models)."""

    pods: list[Any]
    configmaps: list[Any]
    secrets: list[Any]


@dataclass
class Fleet:
    api: ApiServer
    workdir: Path
    namespace: str
    broker_kind: str
    cloud_dir: Path
    broker_port: int
    sites: dict[str, EdgeSite] = field(default_factory=dict)
    cloud: dict[str, ManagedProcess] = field(default_factory=dict)
    starts: int = 0

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api.client)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api.client)

    def start_cloud(self, name: str, argv: list[str]) -> ManagedProcess:
        self.starts += 1
        process = ManagedProcess(f"{name}-{self.starts}", argv, self.workdir / f"{name}-{self.starts}.log").start()
        self.cloud[name] = process
        return process

    def cloud_component_argv(self, component: str) -> list[str]:
        extra = [] if component == "cloudhub" else ["--kubeconfig", str(self.api.kubeconfig)]
        return [sys.executable, "-m", f"cloud.{component}", "--config", str(self.cloud_dir / "cloud.yaml"), *extra]

    def broker_argv(self) -> list[str]:
        listen = ("127.0.0.1", *(site.host.peer_address for site in self.sites.values()))
        files = self.cloud_dir
        settings = BrokerSettings(listen=tuple(f"{address}:{self.broker_port}" for address in listen),
                                  tls_cert=str(files / "broker.crt"), tls_key=str(files / "broker.key"),
                                  tls_ca=str(files / "ca.crt"), client_certs=True, crl_file=str(files / "crl.pem"))
        return broker_argv(self.broker_kind, settings, self.workdir / "cloud-broker")

    def start_broker(self) -> ManagedProcess:
        process = self.start_cloud("cloud-broker", self.broker_argv())
        wait_until(lambda: tcp_ready("127.0.0.1", self.broker_port), timeout=20, what="the cloud broker",
                   alive=process)
        return process

    def partition(self, cut: bool) -> None:
        """Take every node's link down (or up again); the processes on both sides are not told."""
        for site in self.sites.values():
            site.host.link(not cut)

    def node_ready(self, node: str) -> bool:
        conditions = self.core.read_node(node).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    # -- what each node should hold, from the API server ----------------------------------

    def api_view(self) -> ApiView:
        """The namespace's pods, ConfigMaps and Secrets as the API server has them now: one listing that every
        check of one moment shares (each node's check listed them again)."""
        return ApiView(self.core.list_namespaced_pod(self.namespace).items,
                       self.core.list_namespaced_config_map(self.namespace).items,
                       self.core.list_namespaced_secret(self.namespace).items)

    def expected(self, node: str, view: ApiView) -> dict[str, str | None]:
        """The node's share of this namespace as MetaManager should hold it: key -> resourceVersion.

        Pods carry ``None``: the node's own status reports change a pod's version all the time, and
        the cloud does not echo them back; a pod's presence (and UID) is what must match.
        """
        want: dict[str, str | None] = {}
        referenced: set[str] = set()
        for pod in view.pods:
            if pod.spec.node_name != node or pod.metadata.deletion_timestamp is not None:
                continue
            want[f"{self.namespace}/pod/{pod.metadata.name}"] = None
            body = k8s.ApiClient().sanitize_for_serialization(pod)
            referenced |= {str(key) for key in config_refs(body)}
        for cm in view.configmaps:
            key = f"{self.namespace}/configmap/{cm.metadata.name}"
            if key in referenced:
                want[key] = cm.metadata.resource_version
        for secret in view.secrets:
            key = f"{self.namespace}/secret/{secret.metadata.name}"
            if key in referenced:
                want[key] = secret.metadata.resource_version
        return want

    def store_differences(self, node: str, view: ApiView) -> list[str]:
        """What differs between the node's store and the API server's view (empty when converged)."""
        want = self.expected(node, view)
        mine = {key: value for key, value in self.sites[node].stored().items()
                if key.startswith(f"{self.namespace}/") and key.split("/")[1] in ("pod", "configmap", "secret")}
        problems = [f"missing {key}" for key in sorted(want.keys() - mine.keys())]
        problems += [f"stale {key}" for key in sorted(mine.keys() - want.keys())]
        problems += [f"{key} at rv {mine[key][0]}, API {rv}" for key, rv in sorted(want.items())
                     if key in mine and rv is not None and mine[key][0] != rv]
        return problems

    def pod_differences(self, view: ApiView | None = None) -> list[str]:
        """Pods: every pod Running in the API, and podman running exactly this namespace's pods."""
        problems = []
        api = {}
        for pod in (view or self.api_view()).pods:
            api[f"{self.namespace}_{pod.metadata.name}"] = pod
            if (pod.status.phase or "") != "Running":
                problems.append(f"pod {pod.metadata.name} is {pod.status.phase}")
            elif not pod.status.container_statuses or not all(c.state and c.state.running
                                                                  for c in pod.status.container_statuses):
                problems.append(f"pod {pod.metadata.name}: not every container shows running in the API")
        try:
            running = podman_pods(self.namespace)
        except subprocess.TimeoutExpired as exc:  # a wedged podman: the node's supervisor restarts its service
            return [*problems, f"podman did not list its pods within {exc.timeout:.0f} s"]
        problems += [f"pod {name} runs in podman but not in the API" for name in sorted(running - api.keys())]
        problems += [f"pod {name} is not in podman" for name in sorted(api.keys() - running)]
        return problems

    def device_reported(self, name: str) -> tuple[str | None, str | None]:
        """A Device's reported temperature and its state, from the API."""
        obj = self.custom.get_namespaced_custom_object(devices.GROUP, devices.VERSION, self.namespace, "devices",
                                                       name)
        status = obj.get("status") or {}
        value = next((str(t["reported"]["value"]) for t in status.get("twins") or []
                      if t.get("propertyName") == "temperature" and "reported" in t), None)
        return value, status.get("state")

    def stop(self) -> None:
        for site in self.sites.values():
            site.stop()
        for process in reversed(list(self.cloud.values())):
            process.stop(timeout=30)

    def removal_evidence(self, lines: int = 40) -> str:
        """Where the deletion of the pods stopped: the pods podman still runs, the pod keys each node's store still
        holds, the end of each node's supervisor, EdgeD, MetaManager, EdgeHub and podman logs, and the cloud's."""
        try:
            out = [f"podman still runs: {sorted(podman_pods(self.namespace))}"]
        except (subprocess.SubprocessError, OSError) as exc:
            out = [f"podman did not list its pods: {exc}"]
        for site in self.sites.values():
            try:
                pods = sorted(key for key in site.stored() if "/pod/" in key)
                out.append(f"{site.node}: pod keys in MetaManager's store: {pods}")
            except sqlite3.Error as exc:
                out.append(f"{site.node}: MetaManager's store unreadable: {exc}")
            if site.process is not None:  # the supervisor: which child it restarted (a wedged podman), and when
                out.append(site.process.log_tail(lines))
            for child in ("edged", "metamanager", "edgehub", "podman"):
                log_file = site.state / "logs" / f"{child}.log"
                with contextlib.suppress(OSError):
                    out.append(f"{site.node} {child}.log:")
                    out.extend(f"  {line}" for line in log_file.read_text(errors="replace").splitlines()[-lines:])
        for name, process in self.cloud.items():
            out.append(f"{name}:\n{process.log_tail()}")
        return "\n".join(out)

    def leftovers(self) -> list[str]:
        """Processes still running that this fleet started: on a node's host, or naming a path of its workdir."""
        found = [f"{pid} on {site.node}'s host: {(command_line(pid) or '(gone)')[:160]}"
                 for site in self.sites.values() for pid in site.pids()]
        found += [f"{pid}: {cmdline[:160]}" for pid, cmdline in processes_mentioning(str(self.workdir)).items()]
        return found


def podman_pods(namespace: str) -> set[str]:
    out = subprocess.run(["podman", "pod", "ps", "--format", "{{.Name}}"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return {name for name in out.split() if name.startswith(f"{namespace}_")}


def make_fleet(api: ApiServer, hosts: list[Host], workdir: Path, broker_kind: str = "amqtt",
               data_tmpfs_mb: int | None = None, made: list[Fleet] | None = None) -> Fleet:
    """init, the cloud side, then each node joined with a token and started on its own host; all Ready.

    The fleet goes into ``made`` as soon as it exists, so that a failure half-way is cleaned up too."""
    cloud_dir = workdir / "cloud"
    kubeconfig = str(api.kubeconfig)
    broker_port, join_port = free_port(), free_port()
    names = [f"IP:{host.peer_address}" for host in hosts]
    run([*EDGEHIVE, "init", "--kubeconfig", kubeconfig, *(a for n in names for a in ("--broker-name", n)),
         "--cloud-broker", f"127.0.0.1:{broker_port}", "--out", str(cloud_dir)])
    namespace = f"res-{uuid.uuid4().hex[:6]}"
    fleet = Fleet(api, workdir, namespace, broker_kind, cloud_dir, broker_port)
    if made is not None:
        made.append(fleet)
    tag = uuid.uuid4().hex[:4]
    for i, host in enumerate(hosts):
        node = f"site-{tag}-{i + 1}"
        fleet.sites[node] = EdgeSite(node, host, workdir / node, free_port(), workdir, data_tmpfs_mb=data_tmpfs_mb)
    fleet.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    fleet.start_broker()
    for component in CLOUD_COMPONENTS:
        fleet.start_cloud(component, fleet.cloud_component_argv(component))
    first = hosts[0].peer_address
    joinserver = fleet.start_cloud("joinserver", [
        sys.executable, "-m", "cloud.joinserver", "--listen", f"{first}:{join_port}", "--kubeconfig", kubeconfig,
        "--cloud-broker", f"mqtts://{first}:{broker_port}"])
    wait_until(lambda: tcp_ready(first, join_port), timeout=20, what="the join endpoint", alive=joinserver)
    for node, site in fleet.sites.items():
        token = run([*EDGEHIVE, "gettoken", "--kubeconfig", kubeconfig, "--ttl", "10m"]).strip()
        broker = f"mqtts://{site.host.peer_address}:{broker_port}"
        run(site.in_host(*EDGEHIVE, "join", "--cloud", f"{first}:{join_port}", "--token", token, "--node", node,
                         "--state-dir", str(site.state), "--cloud-broker", broker))
        site.mount_data()
        site.start()
    for node, site in fleet.sites.items():
        wait_until(lambda n=node: fleet.node_ready(n), timeout=120, what=f"node {node} Ready",  # type: ignore[misc]
                   alive=site.process)
    joinserver.stop()
    del fleet.cloud["joinserver"]
    return fleet


@pytest.fixture
def fleet_factory(apiserver: ApiServer, netns_host: Callable[[], Host], tmp_path: Path) -> Iterator[Any]:
    made: list[Fleet] = []

    def make(nodes: int, broker_kind: str = "amqtt", data_tmpfs_mb: int | None = None) -> Fleet:
        return make_fleet(apiserver, [netns_host() for _ in range(nodes)], tmp_path, broker_kind, data_tmpfs_mb,
                          made)

    yield make
    for fleet in made:
        fleet.partition(False)
        try:
            for pod in fleet.core.list_namespaced_pod(fleet.namespace).items:
                fleet.core.delete_namespaced_pod(pod.metadata.name, fleet.namespace, grace_period_seconds=0)
            # 90 s, and up to 75 s for the supervisor to restart a deadlocked podman (edgehive/podmanprobe.py)
            try:
                wait_until(lambda f=fleet: not podman_pods(f.namespace), timeout=180,  # type: ignore[misc]
                           what="EdgeD removing the pods")
            except pytest.fail.Exception as exc:
                try:
                    evidence = fleet.removal_evidence()
                except Exception as failed:  # the failure above is what must be reported
                    evidence = f"(gathering the evidence failed: {failed!r})"
                pytest.fail(f"{exc}\n{evidence}", pytrace=False)
        finally:
            fleet.stop()
            for name in podman_pods(fleet.namespace):  # only when the check above failed
                subprocess.run(["podman", "pod", "rm", "-f", "-t", "0", name], capture_output=True, check=False)
            lost = release_lost_pod_networks(fleet.namespace)  # a killed podman's: see tests/support/podnetns.py
            if lost:
                print(f"\n{fleet.namespace}: pod network state a killed podman lost, removed: {', '.join(lost)}")
        left = fleet.leftovers()
        for site in fleet.sites.values():  # clean up whatever the check found, then fail on it
            for pid in site.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        kill_processes_mentioning(str(tmp_path))
        for site in fleet.sites.values():
            site.unmount_data()
        assert not left, "processes left behind:\n" + "\n".join(left)
