"""``bench scale``'s books and report: matching writes to receipts, when a node counts as resynchronised, what
each phase measured, and the report built from it with ratios to the run's own baselines and its goals."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from edgehive.bench.scale_cloud import CLOUD, LATENCY_RATE
from edgehive.bench.simnode import STATUS_S
from schemas import kinds

OWNED_KINDS = (kinds.POD, kinds.CONFIGMAP, kinds.SECRET, kinds.PVC, kinds.PV)
"""What EdgeController lists on every new session (cloud/edgecontroller/controller.py)."""
GOAL_CPU_CORES = 1.0
GOAL_KB_PER_NODE = 50.0
GOAL_RESYNC_S = 60.0


def match_latencies(writes: Iterable[tuple[str, int, int]],
                    receipts: Mapping[str, list[tuple[int, int]]]) -> tuple[list[int], int]:
    """Latency of each write (key, resourceVersion, time written): until the node first held that version or a
    newer one (CloudHub's queue lets a newer version replace one not sent yet). Returns (latencies, unmatched)."""
    latencies: list[int] = []
    missing = 0
    for key, rv, written in writes:
        arrived = [t for got_rv, t in receipts.get(key, ()) if got_rv >= rv]
        if arrived:
            latencies.append(max(0, min(arrived) - written))
        else:
            missing += 1
    return latencies, missing


def resynced_at(start: int, *, session: int | None, listed: Mapping[str, int], holds: int | None,
                kinds_listed: Iterable[str] = OWNED_KINDS) -> int | None:
    """When a node was resynchronised after ``start``: the latest of CloudHub announcing its new session, the
    node answering the listing of every kind, and the node holding what changed while it was away; None while
    any of them is missing."""
    times = [session, holds, *(listed.get(kind) for kind in kinds_listed)]
    if any(t is None or t < start for t in times):
        return None
    return max(t for t in times if t is not None)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline`` to 3 decimals; None when either is missing or the baseline is 0."""
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


# -- what each phase measured (edgehive.bench.scale) -----------------------------------------------------------

@dataclass
class Baselines:
    idle_s: float
    idle_cpu: dict[str, float]
    idle_rss: dict[str, int]
    idle_pss: dict[str, int]
    raw_broker: float
    raw_api: float


@dataclass
class SetUp:
    registered_s: float
    registered_rss: dict[str, int]
    pods_rate: float
    catch_up_s: float | None


@dataclass
class Latency:
    """ConfigMap updates from the API server to the nodes."""

    percentiles: dict[str, float]
    samples: int
    missing: int

    @property
    def p99(self) -> float | None:
        return self.percentiles["p99"] if self.samples else None


@dataclass
class Steady:
    seconds: float
    cpu: dict[str, float]
    cloud_cpu: float
    machine: float
    rss: dict[str, int]
    pss: dict[str, int]
    status_sent: float
    status_acked: float
    status_written: float
    late: float
    requests: dict[str, float]
    msgs: float


@dataclass
class Herd:
    wills_s: float
    marked_s: float | None
    latency: Latency
    resync_s: float | None
    resynced: int
    seconds: float
    cpu: dict[str, float]
    requests: dict[str, float]
    msgs: float
    stale: int


@dataclass
class ScaleReport:
    broker: str
    nodes: int
    pods_per_node: int
    simulators: int
    notes: list[str]
    # baselines, same run
    raw_broker_msgs_per_s: float
    raw_api_creates_per_s: float
    idle_cloud_cpu_cores: float
    idle_rss_kb: dict[str, int]
    idle_pss_kb: dict[str, int]
    # set-up
    registered_s: float
    pods_delivered_per_s: float
    catch_up_s: float | None  # after the set-up, until node statuses were answered in time again
    # steady state
    steady_s: float
    steady_cpu_cores: dict[str, float]
    cloud_cpu_cores: float
    machine_busy_cores: float
    registered_rss_kb: dict[str, int]  # after registration, before any pod: the nodes' own share
    rss_kb: dict[str, int]
    pss_kb: dict[str, int]
    cloud_kb_per_node: float
    cloud_pss_kb_per_node: float
    status_sent_per_s: float
    status_written_per_s: float  # node status PATCHes the API server served
    status_acked_per_s: float  # answered before the node's next status replaced them
    late_answers_per_s: float  # answers to statuses already replaced: written, but over 10 s after they were sent
    steady_api_requests_per_s: dict[str, float]
    steady_msgs_per_s: float
    steady_latency_ms: dict[str, float]
    # thundering herd
    wills_seen_s: float
    marked_unknown_s: float | None
    herd_latency_ms: dict[str, float]
    herd_latency_samples: int
    herd_latency_missing: int
    herd_p99_ms: float | None
    herd_resync_s: float | None
    herd_resynced_nodes: int
    herd_s: float
    herd_cpu_s: dict[str, float]
    herd_api_requests_per_s: dict[str, float]
    herd_msgs_per_s: float
    herd_stale_objects: int
    ratios: dict[str, float | None] = field(default_factory=dict)
    goals: dict[str, bool | None] = field(default_factory=dict)


# -- building the report -----------------------------------------------------------------------------------------

def build_report(broker: str, nodes: int, pods_per_node: int, simulators: int, notes: list[str], base: Baselines,
                 set_up: SetUp, steady: Steady, steady_latency: Latency, herd: Herd) -> ScaleReport:
    """The report, its ratios to this run's baselines, and its goals met or missed."""
    report = ScaleReport(
        broker=broker, nodes=nodes, pods_per_node=pods_per_node, simulators=simulators, notes=notes,
        raw_broker_msgs_per_s=round(base.raw_broker, 1), raw_api_creates_per_s=round(base.raw_api, 1),
        idle_cloud_cpu_cores=round(sum(base.idle_cpu.values()) / base.idle_s, 3), idle_rss_kb=base.idle_rss,
        idle_pss_kb=base.idle_pss,
        registered_s=round(set_up.registered_s, 1), pods_delivered_per_s=round(set_up.pods_rate, 1),
        catch_up_s=set_up.catch_up_s,
        steady_s=round(steady.seconds, 1), steady_cpu_cores={k: round(v / steady.seconds, 3)
                                                             for k, v in steady.cpu.items()},
        cloud_cpu_cores=round(steady.cloud_cpu, 3), machine_busy_cores=steady.machine,
        registered_rss_kb=set_up.registered_rss, rss_kb=steady.rss, pss_kb=steady.pss,
        cloud_kb_per_node=round(_per_node(base.idle_rss, steady.rss, nodes), 1),
        cloud_pss_kb_per_node=round(_per_node(base.idle_pss, steady.pss, nodes), 1),
        status_sent_per_s=round(steady.status_sent, 1), status_written_per_s=steady.status_written,
        status_acked_per_s=round(steady.status_acked, 1), late_answers_per_s=round(steady.late, 1),
        steady_api_requests_per_s=steady.requests, steady_msgs_per_s=round(steady.msgs, 1),
        steady_latency_ms=steady_latency.percentiles,
        wills_seen_s=round(herd.wills_s, 2),
        marked_unknown_s=round(herd.marked_s, 1) if herd.marked_s is not None else None,
        herd_latency_ms=herd.latency.percentiles, herd_latency_samples=herd.latency.samples,
        herd_latency_missing=herd.latency.missing, herd_p99_ms=herd.latency.p99, herd_resync_s=herd.resync_s,
        herd_resynced_nodes=herd.resynced, herd_s=round(herd.seconds, 1), herd_cpu_s=herd.cpu,
        herd_api_requests_per_s=herd.requests, herd_msgs_per_s=round(herd.msgs, 1),
        herd_stale_objects=herd.stale,
    )
    _judge(report, base, set_up, steady, steady_latency, herd)
    return report


def _per_node(idle: dict[str, int], loaded: dict[str, int], nodes: int) -> float:
    """The cloud components' memory (kB) with the nodes, less without them, per node."""
    return sum(loaded[k] - idle[k] for k in CLOUD) / nodes


def _judge(report: ScaleReport, base: Baselines, set_up: SetUp, steady: Steady, steady_latency: Latency,
           herd: Herd) -> None:
    """The report's ratios to this run's baselines, and its goals met or missed; from the unrounded figures."""
    report.ratios = {
        "pods_delivered_vs_raw_api_creates": ratio(set_up.pods_rate, base.raw_api),
        "status_writes_offered_vs_raw_api_creates": ratio(report.nodes / STATUS_S, base.raw_api),
        "status_written_vs_sent": ratio(steady.status_written, steady.status_sent),
        "status_acked_vs_sent": ratio(steady.status_acked, steady.status_sent),
        "steady_msgs_vs_raw_broker": ratio(steady.msgs, base.raw_broker),
        "herd_msgs_vs_raw_broker": ratio(herd.msgs, base.raw_broker),
        "herd_p99_vs_steady_p99": ratio(herd.latency.p99, steady_latency.p99),
        "cloud_cpu_vs_idle": ratio(steady.cloud_cpu, report.idle_cloud_cpu_cores),
    }
    report.goals = {
        "cloud_cpu_cores <= 1": steady.cloud_cpu <= GOAL_CPU_CORES,
        "cloud_kb_per_node <= 50": _per_node(base.idle_rss, steady.rss, report.nodes) <= GOAL_KB_PER_NODE,
        "herd_resync_s <= 60": herd.resync_s <= GOAL_RESYNC_S if herd.resync_s is not None else None,
    }


def print_report(report: ScaleReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "scale": {"nodes": report.nodes, "cloud_cpu_cores": report.cloud_cpu_cores,
                      "cloud_kb_per_node": report.cloud_kb_per_node, "herd_p99_ms": report.herd_p99_ms,
                      "herd_resync_s": report.herd_resync_s},
            "baselines": {"raw_broker_msgs_per_s": report.raw_broker_msgs_per_s,
                          "raw_api_creates_per_s": report.raw_api_creates_per_s,
                          "idle_cloud_cpu_cores": report.idle_cloud_cpu_cores,
                          "steady_latency_ms": report.steady_latency_ms},
            "ratios": report.ratios,
            "goals": report.goals,
            "details": asdict(report),
        }))
        return
    _print_set_up_and_steady_state(report)
    _print_memory(report)
    _print_latency_and_herd(report)


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _goal(r: ScaleReport, name: str) -> str:
    met = r.goals.get(name)
    return "not measured" if met is None else ("met" if met else "MISSED")


def _print_set_up_and_steady_state(r: ScaleReport) -> None:
    cpu = r.steady_cpu_cores
    print(f"scale benchmark: {r.nodes} simulated nodes x {r.pods_per_node} pods, {r.broker} cloud broker, "
          f"{r.simulators} simulator processes")
    for note in r.notes:
        print(f"  note: {note}")
    print(f"  baselines (this run)     raw broker {r.raw_broker_msgs_per_s:.0f} msg/s (QoS 1, one Python pair); raw "
          f"API {r.raw_api_creates_per_s:.0f} pod creates/s (one client)")
    print(f"  set-up                   all registered in {r.registered_s:.1f} s; pods delivered "
          f"{r.pods_delivered_per_s:.0f}/s = {_num(r.ratios['pods_delivered_vs_raw_api_creates'], digits=2)} x raw "
          f"API creates; EdgeController caught up {_num(r.catch_up_s, ' s')} after")
    print(f"  steady state, {r.steady_s:.0f} s     cloud CPU {r.cloud_cpu_cores:.3f} cores (CloudHub "
          f"{cpu['cloudhub']:.3f}, EdgeController {cpu['edgecontroller']:.3f}; goal <= {GOAL_CPU_CORES:.0f}: "
          f"{_goal(r, 'cloud_cpu_cores <= 1')}) = {1000 * r.cloud_cpu_cores / r.nodes:.2f} millicores per node; "
          f"idle with 0 nodes {r.idle_cloud_cpu_cores:.3f}")
    print(f"                           broker {cpu['broker']:.3f}, kube-apiserver {cpu['apiserver']:.3f}, etcd "
          f"{cpu['etcd']:.3f}, simulators {cpu['simulators']:.3f} cores; whole machine "
          f"{r.machine_busy_cores:.2f} of {os.cpu_count()} busy")
    print(f"                           node statuses {r.status_sent_per_s:.1f}/s sent = "
          f"{_num(r.ratios['status_writes_offered_vs_raw_api_creates'], digits=2)} x raw API creates; "
          f"{r.status_written_per_s:.1f}/s written ({_num(r.ratios['status_written_vs_sent'], digits=2)}), "
          f"{r.status_acked_per_s:.1f}/s acknowledged within 10 s ({_num(r.ratios['status_acked_vs_sent'], digits=2)})"
          f", {r.late_answers_per_s:.1f}/s later")
    print("                           API requests/s: " + ", ".join(f"{k} {v:.0f}"
                                                                     for k, v in r.steady_api_requests_per_s.items()))
    print(f"                           node traffic {r.steady_msgs_per_s:.0f} msg/s = "
          f"{_num(r.ratios['steady_msgs_vs_raw_broker'], digits=3)} x raw broker")


def _print_memory(r: ScaleReport) -> None:
    idle_total, total = sum(r.idle_rss_kb[k] for k in CLOUD), sum(r.rss_kb[k] for k in CLOUD)
    print(f"  memory                   CloudHub + EdgeController RSS {idle_total / 1024:.0f} MB "
          f"with 0 nodes, {total / 1024:.0f} MB with {r.nodes}: {r.cloud_kb_per_node:.1f} KB per "
          f"node (goal <= {GOAL_KB_PER_NODE:.0f}: {_goal(r, 'cloud_kb_per_node <= 50')}); PSS "
          f"{r.cloud_pss_kb_per_node:.1f} KB per node")
    for name in CLOUD:
        idle, registered, full = r.idle_rss_kb[name], r.registered_rss_kb[name], r.rss_kb[name]
        print(f"                           {name}: RSS {idle / 1024:.0f} MB idle, {registered / 1024:.0f} MB with "
              f"the nodes registered, {full / 1024:.0f} MB with their pods = {(full - idle) / r.nodes:.1f} KB per node "
              f"({(registered - idle) / r.nodes:.1f} before the pods)")
    print(f"                           (the broker, apart: RSS {r.idle_rss_kb['broker'] / 1024:.0f} -> "
          f"{r.rss_kb['broker'] / 1024:.0f} MB = {(r.rss_kb['broker'] - r.idle_rss_kb['broker']) / r.nodes:.1f} KB per "
          f"node)")


def _print_latency_and_herd(r: ScaleReport) -> None:
    print(f"  latency, API -> node     steady p50 {r.steady_latency_ms['p50']:.1f} ms, p99 "
          f"{r.steady_latency_ms['p99']:.1f} ms (ConfigMap updates at {LATENCY_RATE}/s)")
    print(f"  thundering herd          CloudHub saw all links go in {r.wills_seen_s:.1f} s (wills); NodeReady Unknown "
          f"on all after {_num(r.marked_unknown_s, ' s')}")
    print(f"                           all resynced in {_num(r.herd_resync_s, ' s')} ({r.herd_resynced_nodes} of "
          f"{r.nodes}; goal <= {GOAL_RESYNC_S:.0f} s: {_goal(r, 'herd_resync_s <= 60')})")
    print(f"                           latency p50 {r.herd_latency_ms['p50']:.0f} ms, p99 "
          f"{_num(r.herd_p99_ms, ' ms', 0)} over {r.herd_latency_samples} updates "
          f"({r.herd_latency_missing} never arrived) = "
          f"{_num(r.ratios['herd_p99_vs_steady_p99'])} x steady p99")
    print(f"                           node traffic {r.herd_msgs_per_s:.0f} msg/s over {r.herd_s:.0f} s = "
          f"{_num(r.ratios['herd_msgs_vs_raw_broker'], digits=3)} x raw broker; {r.herd_stale_objects} objects sent "
          f"again that the node already held")
    print("                           API requests/s: " + ", ".join(f"{k} {v:.0f}"
                                                                     for k, v in r.herd_api_requests_per_s.items()))
    print("                           CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r.herd_cpu_s.items()))
