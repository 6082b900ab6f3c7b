"""CloudHub as replicas on real parts: three CloudHub processes on one broker share two real edge nodes by
Leases in the real API server. One cut off from the API server, and one cut off from the broker, stop serving
their nodes and the others take them; one is SIGKILLed and its node is taken by another, and pods still reach
it; it comes back and takes its node again; a node unknown to the API server joins and is served. No node is
served by two replicas at once, over the whole run. One test, for one set-up: the CI suite is long already."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloud.kube import Kube
from cloud.replicas.ownership import owner
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import decode
from tests.fixtures.mqtt import MqttError, TestClient
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.integration.test_end_to_end import pod_manifest, running
from tests.support.cluster import CLOUD_PW, Cluster, node_names
from tests.support.session_records import Announcements, double_service, spells
from tests.support.tcpproxy import CuttableProxy, cuttable

LEASE_S = 4


def split_identities(nodes: list[str]) -> list[str]:
    """Three replica identities such that the first owns nodes[0] and the second nodes[1], whichever random
    names the nodes have: the test then knows whom to kill."""
    for a, b, c in itertools.permutations([f"r{i}" for i in range(12)], 3):
        if owner(nodes[0], (a, b, c)) == a and owner(nodes[1], (a, b, c)) == b:
            return [a, b, c]
    raise AssertionError("no split found")  # 1,320 tries: cannot happen but for a broken hash


def start_replica(cluster: Cluster, identity: str, log_name: str = "", *, kubeconfig: Path | None = None,
                  broker_port: int | None = None) -> ManagedProcess:
    """``kubeconfig`` and ``broker_port``: another way to the API server and to the cloud broker (a proxy)."""
    argv = [*cluster.cloud_argv("cloudhub"), "--replica-id", identity, "--lease-duration-s", str(LEASE_S),
            "--kubeconfig", str(kubeconfig or cluster.api.kubeconfig)]
    if broker_port is not None:
        argv[argv.index("--broker") + 1] = cluster.cloud_broker.url("cloud", CLOUD_PW).replace(
            f":{cluster.cloud_broker.port}", f":{broker_port}")
    name = log_name or f"cloudhub-{identity}"
    process = ManagedProcess(name, argv, cluster.workdir / f"{name}.log").start()
    cluster.cloud[name] = process
    return process


def log_says(process: ManagedProcess, text: str, since: int = 0) -> bool:
    """Whether the process logged ``text``, after the first ``since`` characters of its log."""
    return text in process.log_path.read_text(errors="replace")[since:]


def logged_at(process: ManagedProcess, text: str, since: int = 0) -> datetime:
    """When the process first logged ``text`` (after ``since`` characters), from the line's timestamp."""
    line = next(line for line in process.log_path.read_text(errors="replace")[since:].splitlines() if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def log_length(process: ManagedProcess) -> int:
    return len(process.log_path.read_text(errors="replace"))


def test_replicas_share_the_fleet_through_partitions_a_kill_a_return_and_a_new_node_never_serving_one_twice(
        cluster_factory: Any) -> None:
    """One run, so that the session records are checked over all of it: a reaches the API server, and b the broker,
    through proxies the test cuts. Cut off from the API server, a cannot renew its Lease and stops serving before the
    others count it dead; cut off from the broker, b stops renewing (it cannot serve) and its node moves likewise;
    each takes its node back once healed. Then a is SIGKILLed: its node is taken once its Lease expires and pods
    still reach it; it comes back and takes the node again. Last, a node with no Node object joins: its owner knows
    it from its bridge's retained hello and serves its first registration."""
    *nodes, new = node_names(3)
    cluster: Cluster = cluster_factory(nodes, spare=[new])
    cluster.cloud.pop("cloudhub").stop()  # the lone CloudHub makes way for the replicas
    a, b, c = ids = split_identities(nodes)  # a owns nodes[0], b nodes[1]
    core, ns, broker = cluster.core, cluster.namespace, cluster.cloud_broker
    records = Announcements(broker.host, broker.port, "cloud", CLOUD_PW)
    holders = {nodes[0]: [a], nodes[1]: [b]}  # who served each node in turn: the announcements must end so
    runs: dict[str, list[tuple[Path, datetime | None]]] = {}  # each replica's killed processes' logs, and when
    api_url = urlsplit(cluster.api.url)
    with cuttable(api_url.hostname or "127.0.0.1", api_url.port or 443) as api_proxy, \
            cuttable(broker.host, broker.port) as broker_proxy:
        replicas = {a: start_replica(cluster, a, kubeconfig=api_through(api_proxy, cluster)),
                    b: start_replica(cluster, b, broker_port=broker_proxy.port),
                    c: start_replica(cluster, c)}
        try:
            for i, node in enumerate(nodes):  # once all three have joined, each node is with its own replica
                wait_until(partial(log_says, replicas[ids[i]], f"node {node} connected"), timeout=30,
                           what=f"{ids[i]} serving {node}", alive=replicas[ids[i]])
            for i, node in enumerate(nodes):  # and its pod reaches it
                core.create_namespaced_pod(ns, pod_manifest(f"before-{i}", node, "sleep 3600"))
            for i in range(len(nodes)):
                wait_until(partial(running, cluster, f"before-{i}"), timeout=45, what=f"before-{i} Running")

            for victim, node, proxy, why in ((a, nodes[0], api_proxy, "could not renew Lease"),
                                             (b, nodes[1], broker_proxy, "not on the cloud broker")):
                holders[node] += [cut_off_and_back(cluster, replicas, ids, victim, node, proxy, why), victim]

            heir = kill_and_return(cluster, replicas, ids, a, nodes[0], runs)
            holders[nodes[0]] += [heir, a]
            assert running(cluster, "before-1"), "the other replica's node was disturbed"

            assert Kube.connect(str(cluster.api.kubeconfig)).get_node(new) is None  # never seen by the cluster
            cluster.add_node(new)
            owner_id = owner(new, ids) or ""
            wait_until(partial(log_says, replicas[owner_id], f"node {new} connected"), timeout=30,
                       what=f"{owner_id}, its owner, serving {new}")
            wait_until(partial(cluster.node_ready, new), timeout=45, what=f"{new} registered and Ready")
            core.create_namespaced_pod(ns, pod_manifest("fresh", new, "sleep 3600"))
            wait_until(partial(running, cluster, "fresh"), timeout=45, what=f"a pod on {new} Running")
            # edgehive status asks every replica: each answers for its own nodes, so all three show their links.
            links = status_links(cluster)
            assert {node: links.get(node) for node in [*nodes, new]} == dict.fromkeys([*nodes, new], "up"), links

            every = [spell for identity, process in replicas.items()
                     for spell in spells(identity, [*runs.get(identity, []), (process.log_path, None)])]
            overlapping = double_service(every)
            assert not overlapping, f"served by two replicas at once: {overlapping}"
        finally:
            records.close()
    recorded = {(spell.replica, session) for spell in every for session in spell.sessions}
    for node, expected in holders.items():
        announced = [news for news in records.of(node) if news.connected]
        lone = [news for news in announced if news.replica is None]  # the retained one of the CloudHub before
        assert announced[:len(lone)] == lone, f"a replica's announcement of {node} names no replica: {announced}"
        for news in announced[len(lone):]:  # what the controllers were told is what the replica recorded
            assert (news.replica, news.session) in recorded, f"{news} is in no replica's log"
        turns = [replica for i, replica in enumerate(news.replica for news in announced)
                 if i == 0 or replica != announced[i - 1].replica]
        assert turns[-len(expected):] == expected, f"{node}'s sessions as announced: {announced}"


def api_through(proxy: CuttableProxy, cluster: Cluster) -> Path:
    """A kubeconfig that reaches the API server through ``proxy`` (its certificate names 127.0.0.1, any port)."""
    target = urlsplit(cluster.api.url)
    kubeconfig = cluster.workdir / f"kubeconfig-via-{proxy.port}"
    kubeconfig.write_text(cluster.api.kubeconfig.read_text().replace(
        cluster.api.url, f"{target.scheme}://127.0.0.1:{proxy.port}"))
    return kubeconfig


def cut_off_and_back(cluster: Cluster, replicas: dict[str, ManagedProcess], ids: list[str], victim: str, node: str,
                     proxy: CuttableProxy, why: str) -> str:
    """Cut ``victim`` off: it stops serving ``node``, its heir takes it and a new pod reaches it; heal: it takes the
    node back. Returns the heir."""
    heir_id = owner(node, set(ids) - {victim}) or ""
    heir = replicas[heir_id]
    since = {identity: log_length(process) for identity, process in replicas.items()}
    proxy.cut()
    cut = time.monotonic()
    wait_until(partial(log_says, replicas[victim], f"node {node} no longer served here", since[victim]),
               timeout=LEASE_S + 5, what=f"{victim} giving up {node} once cut off", alive=replicas[victim])
    assert log_says(replicas[victim], why, since[victim])
    wait_until(partial(log_says, heir, f"node {node} connected", since[heir_id]), timeout=LEASE_S + 10,
               what=f"{heir.name} taking {node}")
    print(f"\n{victim} cut off ({why}): {node} taken by {heir.name} {time.monotonic() - cut:.1f} s after the cut")
    if proxy.target[1] == cluster.cloud_broker.port:  # its will says it is down, on its own status topic only
        wait_until(lambda: replica_statuses(cluster) == {r: r != victim for r in ids}, timeout=10,
                   what=f"the replicas' statuses: {victim} down, the others up")
    pod = f"after-{victim}"
    cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest(pod, node, "sleep 3600"))
    wait_until(partial(running, cluster, pod), timeout=45, what=f"{pod} Running on {node} through {heir.name}")
    assert replicas[victim].returncode() is None, f"{victim} exited when cut off"

    since_heal = log_length(replicas[victim])
    proxy.heal()
    wait_until(partial(log_says, replicas[victim], f"node {node} connected", since_heal), timeout=30,
               what=f"{victim} serving {node} again once healed", alive=replicas[victim])
    return heir_id


def kill_and_return(cluster: Cluster, replicas: dict[str, ManagedProcess], ids: list[str], victim: str, node: str,
                    runs: dict[str, list[tuple[Path, datetime | None]]]) -> str:
    """SIGKILL ``victim``: its node is taken once its Lease expires and a new pod reaches it; start it again: the
    node goes back, and the heir let it go first. Returns the heir."""
    heir_id = owner(node, set(ids) - {victim}) or ""
    heir = replicas[heir_id]
    heir_log = log_length(heir)
    replicas[victim].kill()
    killed = time.monotonic()
    runs.setdefault(victim, []).append((replicas[victim].log_path, datetime.now()))
    cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest("after-kill", node, "sleep 3600"))
    wait_until(lambda: log_says(heir, f"node {node} connected", heir_log), timeout=LEASE_S + 10,
               what=f"{heir.name} taking {node}")
    taken = time.monotonic() - killed
    assert taken >= LEASE_S - 1.5, f"{node} taken {taken:.1f} s after the kill, before the Lease expired"
    wait_until(lambda: running(cluster, "after-kill"), timeout=45, what="a pod created after the kill Running")
    print(f"\n{node} taken by {heir.name} {taken:.1f} s after the kill, its pod Running "
          f"{time.monotonic() - killed:.1f} s after it")

    heir_log = log_length(heir)
    back = replicas[victim] = start_replica(cluster, victim, log_name=f"cloudhub-{victim}-again")
    wait_until(partial(log_says, back, f"node {node} connected"), timeout=30, what=f"{victim} back on {node}",
               alive=back)
    # The node's own line: how many nodes the heir loses at once depends on how the (random) names hash.
    let_go = f"node {node} no longer served here"
    wait_until(partial(log_says, heir, let_go, heir_log), timeout=5, what=f"{heir.name} letting {node} go")
    assert logged_at(heir, let_go, heir_log) < logged_at(back, f"node {node} connected"), \
        f"{node} served by two replicas at once"
    cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest("back", node, "sleep 3600"))
    wait_until(lambda: running(cluster, "back"), timeout=45, what="a pod created after the return Running")
    return heir_id


def replica_statuses(cluster: Cluster) -> dict[str, bool]:
    """Each replica's retained status, read from its own topic."""
    found: dict[str, bool] = {}
    broker = cluster.cloud_broker
    with TestClient(broker.host, broker.port, username="cloud", password=CLOUD_PW) as client:
        client.subscribe(topics.status("cloudhub") + "/+")
        with contextlib.suppress(MqttError):
            while True:
                message = client.expect(timeout=1.0)
                parsed = topics.parse_status(message.topic)
                if parsed is not None and parsed[1] is not None:
                    found[parsed[1]] = ComponentStatus.parse(decode(message.payload).body).up
    return found


def status_links(cluster: Cluster) -> dict[str, str]:
    """Each node's link as ``edgehive status --json`` shows it."""
    result = subprocess.run(
        [sys.executable, "-m", "edgehive", "status", "--broker", cluster.cloud_broker.url("cloud", CLOUD_PW),
         "--kubeconfig", str(cluster.api.kubeconfig), "--json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert found["problem"] is None, found["problem"]
    return {node["name"]: node["link"] for node in found["nodes"]}
