"""The replicated cloud under test in ``bench scale --broker nats``: N NATS members on loopback routing to each
other, N CloudHub replicas sharing the fleet by Leases, N EdgeController candidates electing a leader; as
``edgehive up --broker nats --replicas N`` runs them (edgehive.stack), each its own process. N=1 is what that
command runs for one: one member, the lone CloudHub, one EdgeController.

The members are anonymous (no per-node users or ACL), as the single-broker bench's broker is: hashing
thousands of bcrypt passwords is not what is measured. Replica i is given the member list starting at
member i, as clients given the list in different orders spread over the cluster.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from broker.embedded import BrokerSettings
from broker.launch import BrokerMissing, broker_argv, wait_ready
from edgehive.bench.harness import BenchError, free_port, process
from edgehive.bench.procfs import read_memory
from runtime.url import BrokerUrl

LEASE_DURATION_S = 10  # CloudHub's default (cloud.cloudhub.hub): what the 15 s failover goal is measured with
_OWNED = re.compile(r"replica (\S+): (\d+) nodes now")


@dataclass
class HaCloud:
    replicas: int
    work: Path
    members: list[subprocess.Popen[bytes]]
    member_urls: list[BrokerUrl]
    hubs: dict[str, subprocess.Popen[bytes]]  # replica identity (or "cloudhub") -> process
    controllers: list[subprocess.Popen[bytes]]

    @property
    def pids(self) -> dict[str, list[int]]:
        return {"cloudhub": [p.pid for p in self.hubs.values()],
                "edgecontroller": [p.pid for p in self.controllers],
                "nats": [p.pid for p in self.members]}

    def hub_log(self, identity: str) -> Path:
        return self.work / f"{identity}.log"

    def owned_counts(self) -> dict[str, int]:
        """Nodes each live replica says it serves (its last 'replica X: N nodes now' log line)."""
        counts: dict[str, int] = {}
        for identity, proc in self.hubs.items():
            if proc.poll() is not None:
                continue
            found = _OWNED.findall(self.hub_log(identity).read_text(errors="replace"))
            counts[identity] = int(found[-1][1]) if found else 0
        return counts

    def rss_kb(self) -> dict[str, list[int]]:
        """RSS of every live process, by group (the order of ``pids``)."""
        out: dict[str, list[int]] = {}
        for group, pids in self.pids.items():
            out[group] = []
            for pid in pids:
                try:
                    out[group].append(read_memory(pid).rss_kb)
                except OSError:
                    continue  # killed on purpose
        return out


def start_members(stack: ExitStack, work: Path, count: int) -> tuple[list[subprocess.Popen[bytes]], list[BrokerUrl]]:
    """``count`` members on loopback, started at once (MQTT waits for a JetStream quorum) and ready."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(count)]  # MQTT, NATS clients, routes
    secret = work / "route-secret"
    secret.write_text(secrets.token_hex(32) + "\n")
    procs, urls = [], []
    for i, (mqtt, client, route) in enumerate(ports):
        settings = BrokerSettings(
            listen=(f"127.0.0.1:{mqtt}",), nats_name=f"nats-{i + 1}", nats_client_listen=f"127.0.0.1:{client}",
            nats_cluster=f"127.0.0.1:{route}" if count > 1 else None,
            nats_route_secret_file=str(secret) if count > 1 else None,
            nats_routes=tuple(f"127.0.0.1:{p[2]}" for j, p in enumerate(ports) if j != i and count > 1))
        member_dir = work / f"nats-{i + 1}"
        try:
            argv = broker_argv("nats", settings, member_dir)
        except BrokerMissing as exc:
            raise BenchError(f"bench scale: {exc}") from exc
        procs.append(stack.enter_context(process(argv, work / f"nats-{i + 1}.log")))
        urls.append(BrokerUrl("127.0.0.1", mqtt))
    for i, url in enumerate(urls):
        if not wait_ready(url, 60):
            raise BenchError(f"bench scale: NATS member {i + 1} did not serve MQTT; see {work}/nats-{i + 1}.log")
    return procs, urls


def member_list(urls: list[BrokerUrl], first: int) -> str:
    """The members as one URL, starting at member ``first``."""
    order = urls[first:] + urls[:first]
    return "mqtt://" + ",".join(f"{u.host}:{u.port}" for u in order)


def start_ha_cloud(stack: ExitStack, work: Path, replicas: int, kubeconfig: Path) -> HaCloud:
    work.mkdir(parents=True, exist_ok=True)
    members, urls = start_members(stack, work, replicas)
    hubs: dict[str, subprocess.Popen[bytes]] = {}
    controllers: list[subprocess.Popen[bytes]] = []
    for i in range(replicas):
        env = {**os.environ, "EDGEHIVE_BROKER": member_list(urls, i)}
        identity = f"cloudhub-{i + 1}" if replicas > 1 else "cloudhub"
        hub_args = (["--replica-id", identity, "--kubeconfig", str(kubeconfig), "--lease-duration-s",
                     str(LEASE_DURATION_S), "--up-qos", "0"] if replicas > 1 else [])
        hubs[identity] = stack.enter_context(process([sys.executable, "-m", "cloud.cloudhub", *hub_args],
                                                     work / f"{identity}.log", env))
        elect = (["--leader-elect", "edgecontroller", "--leader-identity", f"edgecontroller-{i + 1}"]
                 if replicas > 1 else [])
        controllers.append(stack.enter_context(process(
            [sys.executable, "-m", "cloud.edgecontroller", "--kubeconfig", str(kubeconfig), *elect],
            work / f"edgecontroller-{i + 1}.log", env)))
    return HaCloud(replicas, work, members, urls, hubs, controllers)
