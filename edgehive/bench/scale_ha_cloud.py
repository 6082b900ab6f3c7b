"""The replicated cloud under test in ``bench scale --broker nats``: N NATS members on loopback routing to each
other, N CloudHub replicas sharing the fleet by Leases, N EdgeController replicas sharing the nodes by Leases of
their own (cloud/edgecontroller/shard.py), the CloudHub replicas routing each node's messages to its owner
(``--edgecontroller-shards``); as ``edgehive up --broker nats --replicas N`` runs them (edgehive.stack), each its
own process. N=1 is what that command runs for one: one member, the lone CloudHub, one EdgeController.

The members are anonymous (no per-node users or ACL), as the single-broker bench's broker is: hashing
thousands of bcrypt passwords is not what is measured. Replica i is given the member list starting at
member i, as clients given the list in different orders spread over the cluster.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
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
_MEMBERS = re.compile(r"replica \S+: \d+ nodes now .* over members (\[.*\])")


@dataclass
class HaCloud:
    replicas: int
    work: Path
    members: list[subprocess.Popen[bytes]]
    member_urls: list[BrokerUrl]
    member_clients: list[BrokerUrl]  # each member's NATS client port (JetStream API requests: edgehive.bench.natsapi)
    hubs: dict[str, subprocess.Popen[bytes]]  # replica identity (or "cloudhub") -> process
    controllers: dict[str, subprocess.Popen[bytes]]  # EdgeController replica identity (or "edgecontroller")

    @property
    def pids(self) -> dict[str, list[int]]:
        return {"cloudhub": [p.pid for p in self.hubs.values()],
                "edgecontroller": [p.pid for p in self.controllers.values()],
                "nats": [p.pid for p in self.members]}

    @property
    def controller_pids(self) -> dict[str, list[int]]:
        """Each EdgeController replica on its own: what each one's share of the fleet costs it."""
        return {identity: [proc.pid] for identity, proc in self.controllers.items()}

    def log(self, identity: str) -> Path:
        """A CloudHub's or an EdgeController's log, by its identity."""
        return self.work / f"{identity}.log"

    def owned_counts(self) -> dict[str, int]:
        """Nodes each live CloudHub replica says it serves (its last 'replica X: N nodes now' log line)."""
        return _owned(self.hubs, self.log)

    def controllers_settled(self) -> bool:
        """Whether every EdgeController replica counts all of them as members (its last handover's log line): the
        joins' handovers are over. Before, their start-up work would count as the idle CPU the fleet's share is
        measured against."""
        everyone = str(sorted(self.controllers))
        for identity in self.controllers:
            found = _MEMBERS.findall(self.log(identity).read_text(errors="replace"))
            if not found or found[-1] != everyone:
                return False
        return True

    def controller_owned_counts(self) -> dict[str, int]:
        """Nodes each live EdgeController replica says it owns (the same log line, its ShardLoop's); empty when
        EdgeController runs unsharded."""
        return _owned(self.controllers, self.log) if self.replicas > 1 else {}

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

    def controller_rss_kb(self) -> dict[str, int]:
        """RSS of each live EdgeController replica, by identity."""
        out = {}
        for identity, proc in self.controllers.items():
            with contextlib.suppress(OSError):
                out[identity] = read_memory(proc.pid).rss_kb
        return out


def _owned(procs: dict[str, subprocess.Popen[bytes]], log: Callable[[str], Path]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for identity, proc in procs.items():
        if proc.poll() is not None:
            continue
        found = _OWNED.findall(log(identity).read_text(errors="replace"))
        counts[identity] = int(found[-1][1]) if found else 0
    return counts


def start_members(stack: ExitStack, work: Path,
                  count: int) -> tuple[list[subprocess.Popen[bytes]], list[BrokerUrl], list[BrokerUrl]]:
    """``count`` members on loopback, started at once (MQTT waits for a JetStream quorum) and ready: the processes,
    their MQTT addresses and their NATS client addresses."""
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
            # MQTT waits for a quorum, so a member that exited shows as another one not serving: name it.
            dead = "".join(f"; member {j + 1} exited ({work}/nats-{j + 1}.log)"
                           for j, proc in enumerate(procs) if proc.poll() is not None)
            raise BenchError(f"bench scale: NATS member {i + 1} did not serve MQTT{dead}; "
                             f"see {work}/nats-{i + 1}.log")
    return procs, urls, [BrokerUrl("127.0.0.1", client) for _, client, _ in ports]


def member_list(urls: list[BrokerUrl], first: int) -> str:
    """The members as one URL, starting at member ``first``."""
    order = urls[first:] + urls[:first]
    return "mqtt://" + ",".join(f"{u.host}:{u.port}" for u in order)


def start_ha_cloud(stack: ExitStack, work: Path, replicas: int, kubeconfig: Path) -> HaCloud:
    work.mkdir(parents=True, exist_ok=True)
    members, urls, clients = start_members(stack, work, replicas)
    hubs: dict[str, subprocess.Popen[bytes]] = {}
    controllers: dict[str, subprocess.Popen[bytes]] = {}
    for i in range(replicas):
        env = {**os.environ, "EDGEHIVE_BROKER": member_list(urls, i)}
        identity = f"cloudhub-{i + 1}" if replicas > 1 else "cloudhub"
        # --down-qos 0 in both rounds: the nodes take their down topic at QoS 0 in both (NATS_DOWN_QOS). The
        # nodes' messages passed on and the answers to them at QoS 0 too, as edgehive up runs them on NATS.
        shared = ["--replica-id", identity, "--kubeconfig", str(kubeconfig), "--lease-duration-s",
                  str(LEASE_DURATION_S), "--up-qos", "0", "--edgecontroller-shards"] if replicas > 1 else []
        hub_args = ["--down-qos", "0", "--forward-qos", "0", *shared]
        hubs[identity] = stack.enter_context(process([sys.executable, "-m", "cloud.cloudhub", *hub_args],
                                                     work / f"{identity}.log", env))
        ec = f"ec-{i + 1}" if replicas > 1 else "edgecontroller"
        shard = ["--replica-id", ec, "--lease-duration-s", str(LEASE_DURATION_S)] if replicas > 1 else []
        controllers[ec] = stack.enter_context(process(
            [sys.executable, "-m", "cloud.edgecontroller", "--kubeconfig", str(kubeconfig), "--answer-qos", "0",
             *shard],
            work / f"{ec}.log", env))
    return HaCloud(replicas, work, members, urls, clients, hubs, controllers)


def status_names(cloud: HaCloud) -> tuple[str, ...]:
    """What ``wait_status`` waits for: every replica's own status (each reports on its own topic), or the lone
    components'."""
    if cloud.replicas == 1:
        return ("cloudhub", "edgecontroller")
    return (*(f"cloudhub/{h}" for h in cloud.hubs), *(f"edgecontroller/{c}" for c in cloud.controllers))
