"""``edgehive bench scale``: one CloudHub and one EdgeController serving 1,000 simulated edge nodes.

Real: etcd and kube-apiserver, the cloud broker (mosquitto by default), CloudHub and EdgeController, each its
own process as in production (edgehive.bench.scale_cloud). Simulated: the edge nodes (edgehive.bench.simnode:
each says what EdgeHub, MetaManager and EdgeD say over its bridge's one MQTT connection, and answers with
MetaManager's own logic over an in-memory store; no containers run, so the pods stay Pending: reporting them
Running would add 10,000 pod status writes to the set-up and nothing to what is measured). 250 nodes share
one simulator process (edgehive.bench.simulator), driven from here (edgehive.bench.scale_fleet).

Phases, one function each, with progress on stderr:

1. baselines, with 0 nodes: the cloud components' memory and idle CPU; the raw broker rate (a QoS 1 publisher
   and subscriber pair on the same broker, as ``bench link``); the raw API server rate (pods created one after
   another by one client, bound to no node, so that nothing acts on them);
2. set-up: the nodes connect and register, then one ConfigMap per node and N x P pods that mount it are created
   one after another by one client: pods delivered to the nodes per second against the raw create rate; then a
   wait (up to 5 minutes) until EdgeController has worked off what the set-up left it and answers node statuses
   before the next one replaces them;
3. steady state: CPU of every process over 60 s with the nodes idle but for keepalives and node status; memory
   against phase 1, per node; node statuses written (the API server's own request counters) and acknowledged
   against those sent; the latency from a ConfigMap update in the API server to its receipt on the node, at 50
   updates/s;
4. thundering herd: every node's socket is cut at once (no DISCONNECT: the broker publishes the wills); once
   CloudHub has seen them all go and EdgeController has marked them NodeReady Unknown, every node's ConfigMap
   changes; then all nodes reconnect at once while the ConfigMap updates go on: their latency, and the time
   until every node is resynchronised: CloudHub announced its new session, the node answered EdgeController's
   listing of its pods, ConfigMaps and Secrets, and it holds the ConfigMap version written while it was away.

The machine is noisy (2 cores, shared), so every figure that has a baseline from the same run is also given as
a ratio to it (edgehive.bench.scale_report).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from cloud.kube import Kube
from edgehive.bench.harness import BenchError, Route, percentiles, progress_printer, run_path, wait_until
from edgehive.bench.procfs import Window
from edgehive.bench.scale_cloud import (
    CLOUD,
    LATENCY_RATE,
    RAW_NAMESPACE,
    STATUS_WRITE,
    Cloud,
    ConfigMapStream,
    api,
    per_s,
    pod_manifest,
    set_configmap,
    start_cloud,
    unknown_nodes,
)
from edgehive.bench.scale_fleet import NODES_PER_SIMULATOR, Fleet, Sessions
from edgehive.bench.scale_report import (
    OWNED_KINDS,
    Baselines,
    Herd,
    Latency,
    ScaleReport,
    SetUp,
    Steady,
    build_report,
    match_latencies,
    resynced_at,
)
from edgehive.bench.simnode import NAMESPACE, RESEND_S, configmap_key
from schemas import kinds
from schemas.envelope import Op
from schemas.resource import ResourceKey

RAW_BROKER_MESSAGES = 5000
RAW_API_PODS = 500
IDLE_S = 10.0
SETTLE_S = 10.0
STEADY_S = 60.0
STEADY_LATENCY_S = 10.0
HERD_MIN_STREAM_S = 10.0
HERD_TIMEOUT_S = 300.0
CATCH_UP_S = 300.0
CATCH_UP_PROBE_S = 10.0
NO_LATENCY = {"p50": 0.0, "p99": 0.0}


@dataclass
class _Run:
    """What every phase works with."""

    nodes: int
    pods_per_node: int
    cloud: Cloud
    sessions: Sessions
    say: Callable[[str], None]
    notes: list[str]


def bench_scale(nodes: int = 1000, pods_per_node: int = 10, broker: str = "mosquitto",
                progress: bool = True) -> ScaleReport:
    if nodes < 1 or pods_per_node < 0:
        raise BenchError("bench scale: --nodes must be at least 1 and --pods-per-node at least 0")
    say = progress_printer("scale", progress)

    notes = [f"cloud broker {broker}, anonymous (no per-node users or ACL: hashing {nodes} passwords is not what "
             "is measured)", "DeviceController not running",
             "pods stay Pending: the simulated nodes run no containers and report no pod status"]
    with ExitStack() as stack:
        cloud = start_cloud(stack, broker, say)
        sessions = Sessions(cloud.url)
        stack.callback(sessions.close)
        run = _Run(nodes, pods_per_node, cloud, sessions, say, notes)
        baselines = _baselines(run)
        fleet = Fleet(stack, cloud.url, nodes, cloud.work)
        notes.append(f"{len(fleet.procs)} simulator processes, {NODES_PER_SIMULATOR} nodes each at most")
        set_up = _set_up(run, fleet)
        stream_kube = Kube.connect(str(cloud.local.kubeconfig))  # the ConfigMap updates' own client
        stack.callback(stream_kube.close)
        steady = _steady_state(run, fleet)
        steady_latency = _steady_latency(run, fleet, stream_kube)
        herd = _herd(run, fleet, stream_kube)
    return build_report(broker, nodes, pods_per_node, len(fleet.procs), notes, baselines, set_up, steady,
                        steady_latency, herd)


# -- 1. baselines ---------------------------------------------------------------------------------------------------

def _baselines(run: _Run) -> Baselines:
    cloud, say = run.cloud, run.say
    say(f"baseline: CloudHub and EdgeController idle with 0 nodes for {IDLE_S:.0f} s (CPU, then memory)")
    time.sleep(3)  # their start's own work done
    window = Window({name: cloud.pids[name] for name in CLOUD}).start()
    time.sleep(IDLE_S)
    idle_s, idle_cpu, _ = window.stop()
    idle_rss, idle_pss = _memory(cloud)
    say(f"baseline: raw broker rate, {RAW_BROKER_MESSAGES} QoS 1 messages from one client to another")
    raw_broker, _ = run_path(Route("raw", cloud.url, cloud.url, "bench/scale-raw"), RAW_BROKER_MESSAGES, None)
    say(f"baseline: raw API server rate, {RAW_API_PODS} pods bound to no node created by one client")
    core = cloud.kube.core
    start = time.perf_counter()
    for i in range(RAW_API_PODS):
        api(core.create_namespaced_pod, RAW_NAMESPACE, pod_manifest(f"raw-{i}", None, None))
    raw_api = RAW_API_PODS / (time.perf_counter() - start)
    api(core.delete_collection_namespaced_pod, RAW_NAMESPACE, grace_period_seconds=0)
    say(f"  raw broker {raw_broker:.0f} msg/s, raw API {raw_api:.0f} creates/s")
    return Baselines(idle_s, idle_cpu, idle_rss, idle_pss, raw_broker, raw_api)


def _memory(cloud: Cloud) -> tuple[dict[str, int], dict[str, int]]:
    """RSS and PSS in kB by process."""
    memory = cloud.memory()
    return {k: m.rss_kb for k, m in memory.items()}, {k: m.pss_kb for k, m in memory.items()}


# -- 2. set-up ------------------------------------------------------------------------------------------------------

def _set_up(run: _Run, fleet: Fleet) -> SetUp:
    registered_s, registered_rss = _register(run, fleet)
    pods_rate = _deliver_pods(run, fleet)
    catch_up_s = _catch_up(run, fleet)
    if catch_up_s is None:
        run.notes.append(f"EdgeController did not catch up within {CATCH_UP_S:.0f} s: the steady state below is "
                         "one with a growing backlog of node statuses")
    return SetUp(registered_s, registered_rss, pods_rate, catch_up_s)


def _register(run: _Run, fleet: Fleet) -> tuple[float, dict[str, int]]:
    """Seconds until every node is connected and registered; the cloud's RSS then (nodes and sessions, no pods
    yet: where the memory goes)."""
    nodes, sessions = run.nodes, run.sessions
    run.say(f"set-up: {nodes} simulated nodes connect and register")
    fleet.command("connect")
    registered_s = wait_until(
        lambda: len(fleet.registered) >= nodes and sessions.count(Op.CONNECTED) >= nodes,
        120 + nodes * 0.2, "every node to connect and register",
        progress=lambda: f"{len(fleet.connected)} links up, CloudHub sees {sessions.count(Op.CONNECTED)} connected, "
                         f"{len(fleet.registered)} registered", say=run.say)
    time.sleep(SETTLE_S)
    registered_rss, _ = _memory(run.cloud)
    run.say(f"  all {nodes} registered in {registered_s:.1f} s")
    return registered_s, registered_rss


def _deliver_pods(run: _Run, fleet: Fleet) -> float:
    """One ConfigMap per node, then the pods that mount it, created one after another; pods delivered per second,
    from the first create to the last pod's arrival on its node."""
    core, say, nodes, per_node = run.cloud.kube.core, run.say, run.nodes, run.pods_per_node
    say(f"set-up: creating {nodes} ConfigMaps")
    for name in fleet.names:
        api(core.create_namespaced_config_map, NAMESPACE,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{name}"}, "data": {"v": "0"}})
    pod_keys = [str(ResourceKey(NAMESPACE, kinds.POD, f"{name}-p{i}")) for name in fleet.names for i in range(per_node)]

    def delivered() -> int:
        with fleet.lock:
            return sum(1 for k in pod_keys if k in fleet.first_got)

    say(f"set-up: creating {len(pod_keys)} pods, one after another ({per_node} per node)")
    pods_start = time.monotonic_ns()
    for n, name in enumerate(fleet.names):
        for i in range(per_node):
            api(core.create_namespaced_pod, NAMESPACE, pod_manifest(f"{name}-p{i}", name, f"cfg-{name}"))
        if (n + 1) % max(1, nodes // 10) == 0:
            say(f"  pods for {n + 1} nodes created, {delivered()} delivered")
    wait_until(lambda: delivered() >= len(pod_keys), 300, "every pod to reach its node",
               progress=lambda: f"{delivered()} of {len(pod_keys)} pods delivered", say=say, poll=0.5)
    with fleet.lock:
        last_pod = max((fleet.first_got[k] for k in pod_keys), default=pods_start)
        configmaps = sum(1 for name in fleet.names if configmap_key(name) in fleet.first_got)
    pods_rate = len(pod_keys) / max(1e-9, (last_pod - pods_start) / 1e9) if pod_keys else 0.0
    say(f"  {len(pod_keys)} pods delivered at {pods_rate:.0f}/s ({configmaps} ConfigMaps)")
    return pods_rate


def heartbeats_acked(stats: dict[str, int]) -> int:
    """What the nodes sent every node_status_s and the cloud answered: statuses (on a change or every
    node_status_report_s) and Lease heartbeats (the other passes), as simnode.SimNode.status sends them."""
    return stats.get(f"acked_{kinds.NODESTATUS}", 0) + stats.get(f"acked_{kinds.LEASE}", 0)


def _catch_up(run: _Run, fleet: Fleet) -> float | None:
    """Seconds until the cloud keeps up with the nodes: 90% of the node statuses sent in 10 s answered before the
    next one replaced them. The set-up (registrations, 10,000 pods) leaves EdgeController a backlog; a steady
    state measured before it is drained would be a catch-up, not a steady state. None when it never does."""
    cloud, say = run.cloud, run.say
    say(f"waiting for EdgeController to catch up: node statuses and Lease heartbeats answered within "
        f"{RESEND_S:.0f} s of being sent")
    start = time.monotonic()
    last, last_requests, last_t = fleet.stats(), cloud.requests(), start
    while time.monotonic() - start < CATCH_UP_S:
        time.sleep(CATCH_UP_PROBE_S)
        stats, requests, now = fleet.stats(), cloud.requests(), time.monotonic()
        sent = stats.get("status_queued", 0) - last.get("status_queued", 0)
        answered = heartbeats_acked(stats) - heartbeats_acked(last)
        written = (requests[STATUS_WRITE] - last_requests[STATUS_WRITE]) / (now - last_t)
        say(f"  {now - start:4.0f} s: {answered} of {sent} node statuses and heartbeats answered in time; "
            f"{written:.0f}/s statuses written")
        if sent and answered >= 0.9 * sent:
            return round(now - start, 1)
        last, last_requests, last_t = stats, requests, now
    return None


# -- 3. steady state ------------------------------------------------------------------------------------------------

def _steady_state(run: _Run, fleet: Fleet) -> Steady:
    """CPU, memory, node statuses and traffic over STEADY_S with the nodes idle but for keepalives and status."""
    cloud, say = run.cloud, run.say
    say(f"steady state: {STEADY_S:.0f} s with {run.nodes} nodes idle but for keepalives, node status and Lease "
        "heartbeats")
    before, requests_before = fleet.stats(), cloud.requests()
    window = Window({**cloud.pids, "simulators": fleet.pids}).start()
    end = time.monotonic() + STEADY_S
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(15.0, left))
        say(f"  {STEADY_S - max(0.0, end - time.monotonic()):.0f} s; CloudHub sees "
            f"{run.sessions.count(Op.CONNECTED)} connected")
    seconds, cpu, machine = window.stop()
    after, requests = fleet.stats(), per_s(requests_before, cloud.requests(), seconds)
    rss, pss = _memory(cloud)

    def rate(counter: str) -> float:
        return (after.get(counter, 0) - before.get(counter, 0)) / seconds

    steady = Steady(
        seconds=seconds, cpu=cpu, cloud_cpu=sum(cpu[name] for name in CLOUD) / seconds, machine=machine, rss=rss,
        pss=pss, status_sent=rate("status_queued"),
        status_acked=rate(f"acked_{kinds.NODESTATUS}") + rate(f"acked_{kinds.LEASE}"),
        status_written=requests.get(STATUS_WRITE, 0.0), late=rate("late"), requests=requests,
        msgs=rate("rx") + rate("tx"))
    say(f"  cloud CPU {steady.cloud_cpu:.2f} cores; node statuses {steady.status_sent:.1f}/s sent, "
        f"{steady.status_written:.1f}/s written to the API server, {steady.status_acked:.1f}/s acknowledged before "
        "the next one")
    return steady


def _steady_latency(run: _Run, fleet: Fleet, kube: Kube) -> Latency:
    run.say(f"steady state: latency of ConfigMap updates at {LATENCY_RATE}/s for {STEADY_LATENCY_S:.0f} s")
    stream = ConfigMapStream(kube, fleet.names, LATENCY_RATE, seed=1)
    stream.start()
    time.sleep(STEADY_LATENCY_S)
    stream.finish()
    latency = _arrivals(fleet, stream, "the steady-state updates to arrive")
    if latency.missing or stream.errors:
        run.notes.append(f"steady latency: {latency.missing} updates never arrived, {stream.errors} writes failed")
    run.say(f"  p50 {latency.percentiles['p50']:.1f} ms, p99 {latency.percentiles['p99']:.1f} ms over "
            f"{latency.samples} updates")
    return latency


def _arrivals(fleet: Fleet, stream: ConfigMapStream, what: str) -> Latency:
    """The latency of a finished stream's writes, once they have all arrived (or 30 s have passed)."""

    def matched() -> tuple[list[int], int]:
        with fleet.lock:
            return match_latencies(stream.writes, {k: list(v) for k, v in fleet.receipts.items()})

    with contextlib.suppress(BenchError):
        wait_until(lambda: matched()[1] == 0, 30, what)
    latencies, missing = matched()
    return Latency(percentiles(latencies) if latencies else dict(NO_LATENCY), len(latencies), missing)


# -- 4. the thundering herd -----------------------------------------------------------------------------------------

def _herd(run: _Run, fleet: Fleet, kube: Kube) -> Herd:
    """Every link cut at once, every node's ConfigMap changed while away, every node back at once."""
    cloud, nodes = run.cloud, run.nodes
    before, requests_before = fleet.stats(), cloud.requests()
    window = Window({**cloud.pids, "simulators": fleet.pids}).start()
    stale_before = fleet.stale
    wills_s, marked_s = _cut_links(run, fleet)
    run.say(f"herd: changing every node's ConfigMap while it is away ({nodes} updates)")
    expected = {name: set_configmap(cloud.kube.core, name, "offline") for name in fleet.names}
    t1, times, latency = _reconnect(run, fleet, kube, expected)
    seconds, cpu, _ = window.stop()
    after, requests = fleet.stats(), per_s(requests_before, cloud.requests(), seconds)
    done = [t for t in times.values() if t is not None]
    resync_s = round((max(done) - t1) / 1e9, 2) if len(done) == nodes else None
    msgs = (after.get("rx", 0) + after.get("tx", 0) - before.get("rx", 0) - before.get("tx", 0)) / seconds
    run.say(f"  resynced {len(done)} of {nodes}" + (f" in {resync_s:.1f} s" if resync_s is not None else "") +
            f"; latency p50 {latency.percentiles['p50']:.0f} ms, p99 {latency.percentiles['p99']:.0f} ms; "
            "tearing down")
    return Herd(wills_s, marked_s, latency, resync_s, len(done), seconds, cpu, requests, msgs,
                 fleet.stale - stale_before)


def _cut_links(run: _Run, fleet: Fleet) -> tuple[float, float | None]:
    """Seconds until CloudHub saw every node go (the wills), and until EdgeController marked them all NodeReady
    Unknown (None when it did not within a minute)."""
    nodes, sessions, say = run.nodes, run.sessions, run.say
    say(f"herd: cutting all {nodes} links at once (no DISCONNECT: the broker publishes the wills)")
    dropped = time.monotonic_ns()
    fleet.command("drop")
    wills_s = wait_until(lambda: sessions.count(Op.DISCONNECTED, since=dropped) >= nodes, 120,
                         "CloudHub to see every node gone",
                         progress=lambda: f"CloudHub saw {sessions.count(Op.DISCONNECTED, since=dropped)} go", say=say)
    say(f"  CloudHub saw all {nodes} go in {wills_s:.1f} s; waiting for EdgeController to mark them Unknown")
    core = run.cloud.kube.core
    try:
        return wills_s, wills_s + wait_until(lambda: unknown_nodes(core) >= nodes, 60, "NodeReady Unknown on every "
                                             "node", progress=lambda: f"{unknown_nodes(core)} Unknown", say=say,
                                             poll=2.0)
    except BenchError as exc:
        run.notes.append(str(exc))
        return wills_s, None


def _reconnect(run: _Run, fleet: Fleet, kube: Kube,
               expected: dict[str, int]) -> tuple[int, dict[str, int | None], Latency]:
    """Every node reconnects at once while ConfigMap updates go on: when it began, when each node was
    resynchronised (None: not within HERD_TIMEOUT_S), and the updates' latency meanwhile."""
    run.say(f"herd: all {run.nodes} nodes reconnect at once; ConfigMap updates go on at {LATENCY_RATE}/s")
    stream = ConfigMapStream(kube, fleet.names, LATENCY_RATE, seed=2)
    t1 = time.monotonic_ns()
    fleet.command("connect")
    stream.start()
    try:
        wait_until(lambda: all(t is not None for t in _resync_times(run, fleet, t1, expected).values()),
                   HERD_TIMEOUT_S, "every node to resynchronise",
                   progress=lambda: _herd_progress(run, fleet, t1, expected), say=run.say, every=3.0, poll=0.5)
    except BenchError as exc:
        run.notes.append(str(exc))
    remaining = HERD_MIN_STREAM_S - (time.monotonic_ns() - t1) / 1e9
    if remaining > 0:
        time.sleep(remaining)  # enough updates to measure their latency, however fast the nodes came back
    stream.finish()
    latency = _arrivals(fleet, stream, "the herd's updates to arrive")
    if stream.errors:
        run.notes.append(f"herd: {stream.errors} ConfigMap writes failed")
    return t1, _resync_times(run, fleet, t1, expected), latency


def _resync_times(run: _Run, fleet: Fleet, t1: int, expected: dict[str, int]) -> dict[str, int | None]:
    """When each node was resynchronised after ``t1`` (resynced_at), None for those not yet."""
    with fleet.lock:
        receipts = {configmap_key(n): list(fleet.receipts.get(configmap_key(n), ())) for n in fleet.names}
        listed = {n: dict(fleet.listed.get(n, {})) for n in fleet.names}
    out: dict[str, int | None] = {}
    for name in fleet.names:
        holds = [t for rv, t in receipts[configmap_key(name)] if rv >= expected[name]]
        out[name] = resynced_at(t1, session=run.sessions.connected_at(name), listed=listed[name],
                                holds=min(holds) if holds else None)
    return out


def _herd_progress(run: _Run, fleet: Fleet, t1: int, expected: dict[str, int]) -> str:
    times = _resync_times(run, fleet, t1, expected)
    with fleet.lock:
        up = sum(1 for t in fleet.connected.values() if t >= t1)
        listed = sum(1 for n in fleet.names if all(fleet.listed.get(n, {}).get(k, 0) >= t1 for k in OWNED_KINDS))
    return (f"{up} links up, CloudHub sees {run.sessions.count(Op.CONNECTED, since=t1)} connected, {listed} "
            f"listed, {sum(1 for t in times.values() if t is not None)} resynced")
