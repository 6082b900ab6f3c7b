"""``edgehive bench scale --broker nats --replicas N``: the same simulated fleet on one NATS member with one
CloudHub and EdgeController, then on N members with N CloudHub replicas and N sharded EdgeController replicas
(each owning its share of the nodes); then, with N, one CloudHub replica and one member SIGKILLed while ConfigMap
updates go on.

Real: etcd and kube-apiserver (one pair for the whole run), the NATS members, CloudHub and EdgeController,
each its own process (edgehive.bench.scale_ha_cloud). Simulated: the nodes (edgehive.bench.simulator, each
node's link on one member, moving round the member list when it dies, as a bridge's does). Every node's
Node, ConfigMap and pods are made once, before the first round, as the join endpoint and a user would.

Phases, one function each, one progress line each on stderr (and a few while waiting):

1. objects: the Nodes, one ConfigMap per node and its pods, after the first round's cloud is up and its
   memory taken, so that EdgeController's informer cache is what it grows by (KB per node);
2. per round: start the cloud; connect the fleet until every node is registered, its session announced and its
   pods delivered; steady state: CPU of every process over STEADY_S and memory, per node, and each EdgeController
   replica's own CPU, memory and nodes owned;
3. with N > 1: ownership balance from the replicas' own counts; a replica SIGKILLed: until every node it
   served has a new session, has answered the listing of its pods, ConfigMaps and Secrets and holds the
   ConfigMap version written after the kill; a NATS member SIGKILLed, made the MQTT sessions stream's leader
   first (the worst case): until every node whose link was on it has its link up again; all the while,
   ConfigMap updates at LATENCY_RATE/s, and at the end those that never arrived are the lost messages.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from cloud.joinserver.nodeobject import edge_node
from cloud.kube import Kube
from cloud.replicas.ownership import owned_by
from edgehive.bench.harness import (
    BenchError,
    bench_apiserver,
    bench_workdir,
    process,
    progress_printer,
    wait_status,
    wait_until,
)
from edgehive.bench.natsapi import move_stream_leader, stream_leader
from edgehive.bench.procfs import Window
from edgehive.bench.scale_cloud import (
    LATENCY_RATE,
    ConfigMapStream,
    api,
    api_requests,
    per_s,
    pod_manifest,
    set_configmap,
)
from edgehive.bench.scale_fleet import Fleet, Sessions
from edgehive.bench.scale_ha_cloud import LEASE_DURATION_S, HaCloud, start_ha_cloud, status_names
from edgehive.bench.scale_ha_report import Failover, HaReport, Replica, Round, build_ha_report
from edgehive.bench.scale_report import OWNED_KINDS, match_latencies, resynced_at
from edgehive.bench.simnode import NAMESPACE, configmap_key
from edgehive.localcluster import LocalApiServer, LocalClusterError
from runtime.url import BrokerUrl
from schemas import kinds
from schemas.envelope import Op
from schemas.resource import ResourceKey

STEADY_S = 30.0
SETTLE_S = 5.0
IDLE_S = 10.0
CONNECT_PER_S = 25
"""Nodes joining per second. All at once, 500 nodes' CONNECTs and QoS 1 subscriptions (each a JetStream
consumer, replicated on 3 members) overran a 3-member cluster on this 2-core machine: JetStream API requests
timed out, the clients retried, the retries made more (congestion collapse, see the report's notes)."""
NATS_DOWN_QOS = 0
"""The bridges' --down-qos on NATS, in both rounds: what edgehive join writes for a NATS cluster."""
FAILOVER_TIMEOUT_S = 120.0
LEADER_POLL_S = 0.25
"""How often, and how long at most, the broker failover asks who leads the sessions stream."""
SESSIONS_STREAM = "$MQTT_sess"
"""NATS's stream of MQTT session records: a client's CONNECT reads its record there, so while it has no leader no
client can connect."""
CONNECT_TIMEOUT_S = 180.0
SERVED_ENOUGH = 0.95
ARRIVAL_TIMEOUT_S = 150.0
"""How long the stream's updates are waited for after the failovers before one counts as lost. NATS skips a QoS 1
delivery past a session's max_ack_pending and delivers it again after its ack wait, 30 s (broker/nats.py), as
often as it is skipped: a late update is told from a lost one only by waiting several of those (at 60 s, 4 updates
of one 1,000-node run counted as lost and could have been late). The wait ends as soon as all have arrived;
``slowest_update_s`` says how late the last one was."""


@dataclass
class _Run:
    nodes: int
    pods_per_node: int
    work: Path
    kube: Kube
    kubeconfig: Path
    api_pids: dict[str, list[int]]
    say: Callable[[str], None]
    notes: list[str]
    local: LocalApiServer
    unserved: set[str] = field(default_factory=set)


def bench_scale_ha(nodes: int = 1000, replicas: int = 3, pods_per_node: int = 2,
                   progress: bool = True) -> HaReport:
    if nodes < 1 or replicas < 1 or pods_per_node < 0:
        raise BenchError("bench scale: --nodes and --replicas must be at least 1, --pods-per-node at least 0")
    say = progress_printer("scale", progress)

    notes = ["NATS members anonymous (no per-node users or ACL), DeviceController not running, pods stay Pending "
             "(the simulated nodes run no containers)"]
    with ExitStack() as stack:
        run = _start_api(stack, nodes, pods_per_node, say, notes)
        rounds = [_round(run, 1, first=True)]
        if replicas > 1:
            rounds.append(_round(run, replicas, first=False))
    return build_ha_report(nodes, pods_per_node, notes, rounds)


def _start_api(stack: ExitStack, nodes: int, pods_per_node: int, say: Callable[[str], None],
               notes: list[str]) -> _Run:
    work = bench_workdir(stack, "ehscaleha-")
    say(f"working in {work}; starting etcd and kube-apiserver (shared by every round)")
    local = bench_apiserver(stack, work)
    try:
        local.prepare()
    except LocalClusterError as exc:
        raise BenchError(f"bench scale: {exc}") from exc
    api_pids = {"etcd": [stack.enter_context(process(local.etcd_argv(), work / "etcd.log")).pid],
                "apiserver": [stack.enter_context(process(local.apiserver_argv(), work / "apiserver.log")).pid]}
    wait_until(local.ready, 60, f"the API server (see {work}/apiserver.log)")
    kube = Kube.connect(str(local.kubeconfig))
    stack.callback(kube.close)
    kube.ensure_namespace(NAMESPACE)
    return _Run(nodes, pods_per_node, work, kube, local.kubeconfig, api_pids, say, notes, local)


# -- 1. the fleet's objects -----------------------------------------------------------------------------------------

def _objects(run: _Run, names: list[str]) -> None:
    """Nodes first (replicas serve only nodes with a Node), then each node's ConfigMap and pods."""
    core = run.kube.core
    run.say(f"objects: {len(names)} Nodes, ConfigMaps and {len(names) * run.pods_per_node} pods, one client")
    for name in names:
        api(core.create_node, edge_node(name))
        api(core.create_namespaced_config_map, NAMESPACE,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{name}"}, "data": {"v": "0"}})
        for i in range(run.pods_per_node):
            api(core.create_namespaced_pod, NAMESPACE, pod_manifest(f"{name}-p{i}", name, f"cfg-{name}"))


# -- 2. one round ---------------------------------------------------------------------------------------------------

def _round(run: _Run, replicas: int, first: bool) -> Round:
    with ExitStack() as stack:
        run.say(f"N={replicas}: starting {replicas} NATS member(s), {replicas} CloudHub(s), "
                f"{replicas} EdgeController(s)")
        cloud = start_ha_cloud(stack, run.work / f"n{replicas}", replicas, run.kubeconfig)
        wait_status(cloud.member_urls[0], status_names(cloud), timeout=90)
        if replicas > 1 and not first:  # the objects are there: each replica takes its share of the Nodes
            wait_until(cloud.controllers_settled, 90, f"the EdgeController replicas sharing the Nodes ({cloud.work})")
        sessions = Sessions(cloud.member_urls[0])
        stack.callback(sessions.close)
        time.sleep(SETTLE_S)  # their start's own work done (the controller's first listing)
        idle_cpu, idle_s = _idle(run, cloud)
        idle = cloud.rss_kb()
        # The nodes' down subscriptions at QoS 0, as bridges on NATS are set (broker.bridge says why).
        fleet = Fleet(stack, cloud.member_urls[0], run.nodes, cloud.work, cloud.member_urls, down_qos=NATS_DOWN_QOS)
        if first:
            _objects(run, fleet.names)
        connect_s = _connect(run, cloud, fleet, sessions)
        loaded, cpu, seconds, machine, controllers, requests = _steady(run, cloud, fleet)
        result = Round(replicas, connect_s, seconds, cpu, machine, idle, loaded, cloud.owned_counts(),
                       {k: round(v / idle_s, 4) for k, v in idle_cpu.items()}, controllers=controllers,
                       api_requests_per_s=requests)
        if replicas > 1:
            result.failover = _failovers(run, cloud, fleet, sessions)
        run.say(f"N={replicas}: tearing down")
    return result


def _idle(run: _Run, cloud: HaCloud) -> tuple[dict[str, float], float]:
    """CPU of the cloud's processes with no node connected: what each node's share is measured against. Two
    windows, the quieter of the two per group: a start-up's tail (JetStream electing its stream leaders, the
    informers' first listing) falls in the first and must not pass for idle; on this shared machine a neighbour's
    burst may fall in either. CPU seconds over the (equal) window."""
    run.say(f"N={cloud.replicas}: 2 x {IDLE_S:.0f} s of CPU with no node connected")
    readings = []
    for _ in range(2):
        window = Window(cloud.pids).start()
        time.sleep(IDLE_S)
        readings.append(window.stop())
    seconds = min(r[0] for r in readings)
    return {group: min(r[1][group] / r[0] for r in readings) * seconds for group in readings[0][1]}, seconds


def _connect(run: _Run, cloud: HaCloud, fleet: Fleet, sessions: Sessions) -> float:
    """Seconds until every node is registered, its session announced and its pods and ConfigMap delivered. Past
    CONNECT_TIMEOUT_S, a round with at least SERVED_ENOUGH of them served goes on without the others (named in
    the notes, left out of the failovers): one stuck node should not cost the run's other figures."""
    wanted = {n: [str(ResourceKey(NAMESPACE, kinds.POD, f"{n}-p{i}")) for i in range(run.pods_per_node)]
              + [configmap_key(n)] for n in fleet.names}

    def served() -> set[str]:
        with fleet.lock:
            return {n for n in fleet.registered if sessions.connected_at(n) is not None
                    and all(k in fleet.first_got for k in wanted[n])}

    run.say(f"N={cloud.replicas}: {run.nodes} nodes connect ({CONNECT_PER_S}/s), register and get their objects")
    fleet.command(f"connect {CONNECT_PER_S / len(fleet.procs):.3f}")
    try:
        seconds = wait_until(
            lambda: len(served()) >= run.nodes, CONNECT_TIMEOUT_S + run.nodes / CONNECT_PER_S,
            "every node registered and served",
            progress=lambda: f"{len(fleet.connected)} links up, {sessions.count(Op.CONNECTED)} sessions, "
                             f"{len(fleet.registered)} registered, {len(served())} served",
            say=run.say, every=10.0, poll=0.5)
    except BenchError as exc:
        unserved = sorted(set(fleet.names) - served())
        if len(unserved) > (1 - SERVED_ENOUGH) * run.nodes:
            raise
        run.unserved |= set(unserved)
        seconds = CONNECT_TIMEOUT_S + run.nodes / CONNECT_PER_S
        run.notes.append(f"N={cloud.replicas}: {exc}; going on without {', '.join(unserved)}")
    run.say(f"  N={cloud.replicas}: {run.nodes - len(run.unserved)} of {run.nodes} served in {seconds:.1f} s")
    return seconds


def _steady(run: _Run, cloud: HaCloud, fleet: Fleet) -> tuple[dict[str, list[int]], dict[str, float], float, float,
                                                               dict[str, Replica], dict[str, float]]:
    """Memory of every process, and CPU over STEADY_S with the nodes idle but for keepalives and status; each
    EdgeController replica's own CPU over the same window, memory and nodes owned; and the API server's requests
    per second over that window, by kind."""
    time.sleep(SETTLE_S)
    run.say(f"N={cloud.replicas}: steady state, {STEADY_S:.0f} s of CPU with the nodes idle but for keepalives "
            "and node status")
    window = Window({**cloud.pids, **run.api_pids, "simulators": fleet.pids}).start()
    each = Window(cloud.controller_pids).start()
    requested = api_requests(run.local)
    time.sleep(STEADY_S)
    seconds, cpu, machine = window.stop()
    each_s, each_cpu, _ = each.stop()
    # What the cloud asked of the API server meanwhile: the same in both rounds, unless a replica does more.
    requests = per_s(requested, api_requests(run.local), seconds)
    loaded = cloud.rss_kb()
    rss, owned = cloud.controller_rss_kb(), cloud.controller_owned_counts()
    controllers = {identity: Replica(round(each_cpu[identity] / each_s, 4), rss[identity], owned.get(identity))
                   for identity in cloud.controllers if identity in rss}
    cores = {k: round(v / seconds, 3) for k, v in cpu.items()}
    run.say(f"  N={cloud.replicas}: cores {cores}; machine {machine:.2f} busy; EdgeController replicas "
            + ", ".join(f"{i} {r.cores:.3f} cores {r.rss_kb / 1024:.0f} MB owning {r.owned}"
                        for i, r in controllers.items()))
    run.say(f"  N={cloud.replicas}: API requests/s {requests}")
    return loaded, cpu, seconds, machine, controllers, requests


# -- 3. failovers ---------------------------------------------------------------------------------------------------

def _failovers(run: _Run, cloud: HaCloud, fleet: Fleet, sessions: Sessions) -> Failover:
    kube_stream = Kube.connect(str(run.kubeconfig))  # the updates' own client, as a user's
    try:
        stream = ConfigMapStream(kube_stream, [n for n in fleet.names if n not in run.unserved], LATENCY_RATE,
                                 seed=3)
        stale_before = fleet.stale
        stream.start()
        try:
            failover_s, moved = _kill_replica(run, cloud, fleet, sessions)
            member_killed = time.monotonic_ns()
            broker_s, relinked, election_s = _kill_member(run, cloud, fleet)
        finally:
            stream.finish()
        lost, slowest = _lost(run, fleet, stream)
        owner_moves = sessions.moves_since(member_killed)
        run.say(f"  {owner_moves} nodes served by another replica after the member's death than before")
    finally:
        kube_stream.close()
    return Failover(failover_s, moved, broker_s, relinked, lost, len(stream.writes), stream.errors,
                    fleet.stale - stale_before, election_s, owner_moves, slowest)


def _kill_replica(run: _Run, cloud: HaCloud, fleet: Fleet, sessions: Sessions) -> tuple[float | None, int]:
    """SIGKILL the first replica; seconds until each of its nodes is resynchronised by another."""
    identity = next(iter(cloud.hubs))
    victims = sorted(owned_by(identity, fleet.names, set(cloud.hubs)) - run.unserved)
    run.say(f"failover: SIGKILL of CloudHub replica {identity} ({len(victims)} nodes; Leases of "
            f"{LEASE_DURATION_S} s)")
    cloud.hubs[identity].kill()
    killed = time.monotonic_ns()
    expected = {name: set_configmap(run.kube.core, name, "after-kill") for name in victims}

    def resynced() -> dict[str, int | None]:
        with fleet.lock:
            receipts = {n: list(fleet.receipts.get(configmap_key(n), ())) for n in victims}
            listed = {n: dict(fleet.listed.get(n, {})) for n in victims}
        out: dict[str, int | None] = {}
        for name in victims:
            holds = [t for rv, t in receipts[name] if rv >= expected[name]]
            out[name] = resynced_at(killed, session=sessions.connected_at(name), listed=listed[name],
                                    holds=min(holds) if holds else None, kinds_listed=OWNED_KINDS)
        return out

    try:
        wait_until(lambda: all(t is not None for t in resynced().values()), FAILOVER_TIMEOUT_S,
                   "every node of the killed replica resynchronised",
                   progress=lambda: f"{sum(1 for t in resynced().values() if t is not None)} of {len(victims)} "
                                    "resynced", say=run.say, poll=0.25)
    except BenchError as exc:
        run.notes.append(str(exc))
        return None, len(victims)
    seconds = (max(t for t in resynced().values() if t is not None) - killed) / 1e9
    taken = [(t - killed) / 1e9 for n in victims if (t := sessions.connected_at(n)) is not None]
    run.say(f"  {len(victims)} nodes resynced by the others {seconds:.1f} s after the kill (new sessions "
            f"announced {min(taken):.1f} to {max(taken):.1f} s after it)")
    return round(seconds, 2), len(victims)


def _kill_member(run: _Run, cloud: HaCloud, fleet: Fleet) -> tuple[float | None, int, float | None]:
    """SIGKILL the last NATS member (the first carries the bench's own watcher), made the leader of the MQTT
    sessions stream first (the worst case: edgehive.bench.natsapi); seconds until every node whose link was on it
    has its link up again, on another; and until the survivors had elected the stream's new leader."""
    index = len(cloud.members) - 1
    name = f"nats-{index + 1}"
    if stream_leader(cloud.member_clients[0], SESSIONS_STREAM) != name:  # NATS refuses a move to the leader
        move_stream_leader(cloud.member_clients[0], SESSIONS_STREAM, to=name)
    wait_until(lambda: stream_leader(cloud.member_clients[0], SESSIONS_STREAM) == name, 30,
               f"{name} to lead {SESSIONS_STREAM}", say=run.say, poll=0.2)
    with fleet.lock:
        victims = sorted(n for n, m in fleet.member.items() if m == index and n in fleet.connected
                         and n not in run.unserved)
    run.say(f"broker failover: SIGKILL of NATS member {index + 1}, leader of {SESSIONS_STREAM} "
            f"({len(victims)} node links on it)")
    cloud.members[index].kill()
    killed = time.monotonic_ns()
    election = _LeaderWatch(cloud.member_clients[0], name, killed)

    def back() -> int:
        with fleet.lock:
            return sum(1 for n in victims if fleet.connected.get(n, 0) > killed and fleet.member.get(n) != index)

    try:
        wait_until(lambda: back() >= len(victims), FAILOVER_TIMEOUT_S, "every node's link back",
                   progress=lambda: f"{back()} of {len(victims)} links back", say=run.say, poll=0.1)
    except BenchError as exc:
        run.notes.append(str(exc))
        return None, len(victims), election.seconds()
    with fleet.lock:
        seconds = (max(fleet.connected[n] for n in victims) - killed) / 1e9
    elected = election.seconds()
    run.say(f"  {len(victims)} links back {seconds:.1f} s after the kill (NATS's survivors elected "
            + (f"{SESSIONS_STREAM}'s new leader {elected:.1f} s after it)" if elected is not None else
               f"no new leader of {SESSIONS_STREAM} that the bench saw)"))
    return round(seconds, 2), len(victims), elected


class _LeaderWatch:
    """Asks a surviving member for the sessions stream's leader until it names one other than the killed member
    (a stream without a leader answers nothing: each ask then waits out its timeout), on its own thread."""

    def __init__(self, member: BrokerUrl, killed_name: str, killed_ns: int) -> None:
        self._found: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(member, killed_name, killed_ns), daemon=True,
                                        name="leader-watch")
        self._thread.start()

    def _run(self, member: BrokerUrl, killed_name: str, killed_ns: int) -> None:
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        while not self._done.is_set() and time.monotonic() < deadline:
            leader = stream_leader(member, SESSIONS_STREAM, timeout=LEADER_POLL_S)
            if leader is not None and leader != killed_name:
                self._found = round((time.monotonic_ns() - killed_ns) / 1e9, 2)
                return
            self._done.wait(LEADER_POLL_S if leader is not None else 0)

    def seconds(self) -> float | None:
        """The election's time after the kill; None if the watch saw none (it stops here)."""
        self._thread.join(timeout=2 * LEADER_POLL_S)
        self._done.set()
        return self._found


def _lost(run: _Run, fleet: Fleet, stream: ConfigMapStream) -> tuple[int, float | None]:
    """ConfigMap updates of the stream that never reached their node (nor a newer version did), and the seconds
    from its write to its node of the slowest one that did."""
    run.say(f"lost messages: waiting up to {ARRIVAL_TIMEOUT_S:.0f} s for the {len(stream.writes)} updates")

    def never() -> list[tuple[str, int]]:
        with fleet.lock:
            receipts = {k: list(v) for k, v in fleet.receipts.items()}
        return [(key, rv) for key, rv, _ in stream.writes if not any(got >= rv for got, _ in receipts.get(key, ()))]

    with contextlib.suppress(BenchError):
        wait_until(lambda: not never(), ARRIVAL_TIMEOUT_S, "the updates to arrive", poll=0.5)
    lost = never()
    if lost:
        run.notes.append("never arrived: " + ", ".join(f"{key} rv {rv}" for key, rv in lost[:10]))
    with fleet.lock:
        latencies, _missing = match_latencies(stream.writes, {k: list(v) for k, v in fleet.receipts.items()})
    slowest = round(max(latencies) / 1e9, 2) if latencies else None
    run.say(f"  {len(lost)} of {len(stream.writes)} updates never arrived; the slowest took {slowest} s")
    return len(lost), slowest
