"""``edgehive bench all``: every benchmark in one run, one JSON report and one table.

Each scenario keeps its own command (``edgehive bench link|edge|cloud|twin|mapper|stack|scale|
footprint|workloads|stream``) and measures its own baseline in the same run; this runs them one after
another, so that a release's figures come from one machine in one state. A scenario
that fails is reported with its error and the others still run: one missing figure
should not cost all the others. The JSON holds each scenario under its own key, and under ``goals`` whether the
run meets each goal of issue 19's table (edgehive/bench/goals.py): for that, the link runs three times and the
edge, cloud and twin scenarios once more on mosquitto (``*_mosquitto``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgehive.bench import (
    cloud,
    edge,
    footprint,
    goals,
    link,
    mapper,
    scale,
    scale_report,
    stack,
    streambench,
    twin,
    workloads,
)
from edgehive.bench.harness import BenchError, progress_printer


@dataclass(frozen=True)
class Scenario:
    key: str
    run: Callable[[bool], Any]
    """Measure (``progress`` says whether to print progress on stderr) and return the scenario's report dataclass."""
    show: Callable[[Any, bool], None]
    """The scenario's own printer: its readable report."""
    headline: Callable[[Any], str]
    """One line for the summary table."""


def _r(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("link", lambda p: link.bench_link("mosquitto", 5000, 1000, progress=p), link.print_report,
             lambda r: f"bridge/baseline throughput {_r(r.ratio)}, added p50 {_r(r.added_latency_ms['p50'], 1)} ms"),
    *(Scenario(f"link_{n}", lambda p: link.bench_link("mosquitto", 5000, 1000, progress=p), link.print_report,
               lambda r: f"added p99 {_r(r.added_latency_ms['p99'], 1)} ms (the link's goal holds in 3 runs of 3)")
      for n in (2, 3)),
    Scenario("edge", lambda p: edge.bench_edge(progress=p), edge.print_report,
             lambda r: f"{_r(r.commit_per_s, 0)} commits/s, ratio {_r(r.ratio)}, offline restore "
                       f"{_r(r.offline_restore_s, 1)} s"),
    Scenario("cloud", lambda p: cloud.bench_cloud(progress=p), cloud.print_report,
             lambda r: f"{_r(r.edge_commit_per_s, 0)} objects/s to the edge, ratio {_r(r.ratio)} to raw creates"),
    Scenario("edge_mosquitto", lambda p: edge.bench_edge(progress=p, broker="mosquitto"), edge.print_report,
             lambda r: f"{_r(r.commit_per_s, 0)} commits/s on mosquitto"),
    Scenario("cloud_mosquitto", lambda p: cloud.bench_cloud(broker="mosquitto", progress=p), cloud.print_report,
             lambda r: f"{_r(r.edge_commit_per_s, 0)} objects/s on mosquitto, ratio {_r(r.ratio)}, commit p99 "
                       f"{_r(r.commit_latency_ms['p99'], 0)} ms"),
    Scenario("twin", lambda p: twin.bench_twin(progress=p), twin.print_report,
             lambda r: f"{_r(r.edge_updates_per_s, 0)} updates/s, ratio {_r(r.ratio)}, "
                       f"to the API p99 {_r(r.to_apiserver_ms['p99'], 0)} ms"),
    Scenario("twin_mosquitto", lambda p: twin.bench_twin(broker="mosquitto", progress=p), twin.print_report,
             lambda r: f"{_r(r.edge_updates_per_s, 0)} updates/s on mosquitto, ratio {_r(r.ratio)}"),
    Scenario("mapper", lambda p: mapper.bench_mapper(progress=p), mapper.print_report,
             lambda r: f"{_r(r.dmi_reports_per_s, 0)} values/s through DMI, ratio {_r(r.ratio)} to $hw/events, "
                       f"register to status p50 {_r(r.register_to_status_ms['p50'], 0)} ms"),
    Scenario("stack", lambda p: stack.bench_stack(progress=p), stack.print_report,
             lambda r: f"image {_r(r.image_mb, 1)} MB, start ratio {_r(r.start_ratio)}, stack healthy "
                       f"{_r(r.stack_healthy_s, 1)} s"),
    Scenario("scale", lambda p: scale.bench_scale(progress=p), scale_report.print_report,
             lambda r: f"{r.nodes} nodes: cloud {_r(r.cloud_cpu_cores)} cores, {_r(r.cloud_kb_per_node, 1)} KB/node, "
                       f"herd p99 {_r(r.herd_p99_ms, 0)} ms, resynced in {_r(r.herd_resync_s, 1)} s"),
    Scenario("workloads", lambda p: workloads.bench_workloads(progress=p), workloads.print_report,
             lambda r: f"Deployment of {r.replicas} Ready in {_r(r.deploy_ready_s, 1)} s, pod p50 "
                       f"{_r(r.pod_running_ms['p50'], 0)} ms, ratio {_r(r.ratio)} to nodeName pods"),
    Scenario("footprint", lambda p: footprint.bench_footprint(progress=p), footprint.print_report,
             lambda r: f"edge PSS {_r(r.edge_pss_mb, 1)} MB (distinct pages {_r(r.edge_distinct_mb, 1)} MB; "
                       f"goal <= {footprint.GOAL_MB:.0f})"),
    Scenario("stream", lambda p: streambench.bench_stream(progress=p), streambench.print_report,
             lambda r: f"exec added p50 {_r(r.exec_added_ms['p50'], 0)} ms, logs ratio {_r(r.logs_ratio)}, "
                       f"port-forward ratio {_r(r.portforward_ratio)}"),
)


def bench_all(only: Sequence[str] = (), readable: bool = True,
              progress: bool = True) -> tuple[dict[str, Any], list[tuple[str, str, float]]]:
    """Run the chosen scenarios (all by default); returns the JSON report and the summary rows.

    Progress goes to stderr (a line as each scenario starts and ends, and each scenario's own phases), with
    ``--json`` too: the run takes minutes and stdout carries only the report. ``readable``: each scenario's
    own report printed on stdout as it ends (not with ``--json``)."""
    unknown = set(only) - {s.key for s in SCENARIOS}
    if unknown:
        raise BenchError(f"no scenario {', '.join(sorted(unknown))}; there are "
                               f"{', '.join(s.key for s in SCENARIOS)}")
    chosen = [s for s in SCENARIOS if not only or s.key in only]
    say = progress_printer("all", progress)
    report: dict[str, Any] = {}
    rows: list[tuple[str, str, float]] = []
    for number, scenario in enumerate(chosen, 1):
        say(f"{scenario.key} ({number} of {len(chosen)}) starting")
        if readable:
            print(f"\n=== {scenario.key} ===", flush=True)
        start = time.monotonic()
        try:
            result = scenario.run(progress)
        except BenchError as exc:
            took = time.monotonic() - start
            say(f"{scenario.key} FAILED after {took:.0f} s: {exc}")
            report[scenario.key] = {"error": str(exc)}
            rows.append((scenario.key, f"FAILED: {exc}", took))
            continue
        took = time.monotonic() - start
        say(f"{scenario.key} done in {took:.0f} s")
        report[scenario.key] = dataclasses.asdict(result)
        rows.append((scenario.key, scenario.headline(result), took))
        if readable:
            scenario.show(result, False)
    report["goals"] = goals.verdicts(report)
    return report, rows


def write_report(report: dict[str, Any], rows: list[tuple[str, str, float]], out: Path, as_json: bool) -> None:
    out.write_text(json.dumps(report, indent=1) + "\n")
    if as_json:
        print(json.dumps(report))
        return
    print(f"\n{'SCENARIO':<16} {'TOOK':>7}  FIGURES")
    for key, headline, took in rows:
        print(f"{key:<16} {took:6.0f}s  {headline}")
    print("\nGOALS (issue 19)")
    for name, verdict in report.get("goals", {}).items():
        met = {True: "met", False: "NOT met", None: "missing"}[verdict["met"]]
        figures = ", ".join("-" if v is None else f"{v:g}" for v in verdict["figures"].values())
        print(f"  {met:<8} {name}: {figures} (goal {verdict['goal']})")
    print(f"\nthe whole report: {out}")
