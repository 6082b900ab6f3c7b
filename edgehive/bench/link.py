"""``edgehive bench link``: what the bridge costs, against a baseline measured in the same run.

The baseline is two clients on one broker (publisher -> cloud broker -> subscriber).
The bridged path is publisher -> cloud broker -> bridge -> edge broker -> subscriber, where
the bridge is what a node of that broker kind runs by default (``edgehive.stack.default_bridge``):
mosquitto's own bridge inside the edge mosquitto, or the bridge process (``--bridge python``).
Throughput is measured flat out with QoS 1 and a bounded window; latency at a fixed
1,000 msg/s on both paths, so the difference is what the bridge adds. This machine
is noisy, so only ratios and differences from one run mean anything.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from broker.embedded import BrokerSettings
from broker.launch import broker_argv, wait_ready
from broker.nativebridge import bridge_sections
from broker.passwords import set_password
from edgehive.bench.harness import (
    BenchError,
    Route,
    free_port,
    percentiles,
    process,
    progress_printer,
    run_path,
    wait_link,
)
from edgehive.stack import StackError, resolve_bridge
from runtime.url import BrokerUrl
from schemas import topics

NODE = "bench-node"
CLOUD_USER, CLOUD_PASSWORD = "cloud", "bench-cloud"
NODE_PASSWORD = "bench-node-pw"


@dataclass
class LinkReport:
    broker: str
    bridge: str
    messages: int
    baseline_msgs_per_s: float
    bridge_msgs_per_s: float
    ratio: float
    rate_for_latency: int
    baseline_latency_ms: dict[str, float]
    bridge_latency_ms: dict[str, float]
    added_latency_ms: dict[str, float]


def bench_link(kind: str, messages: int, rate: int, progress: bool = True, bridge: str | None = None) -> LinkReport:
    """``bridge`` None: the broker kind's default, as on a node."""
    try:
        bridge = resolve_bridge(bridge, kind)
    except StackError as exc:
        raise BenchError(f"bench link: {exc}") from None
    say = progress_printer(f"link {kind} --bridge {bridge}", progress)
    with tempfile.TemporaryDirectory(prefix="edgehive-bench-") as tmp:
        work = Path(tmp)
        passwd = work / "passwd"
        set_password(passwd, CLOUD_USER, CLOUD_PASSWORD)
        set_password(passwd, NODE, NODE_PASSWORD)
        cloud_port, edge_port = free_port(), free_port()
        cloud_settings = BrokerSettings(listen=(f"127.0.0.1:{cloud_port}",), password_file=str(passwd))
        edge_settings = BrokerSettings(listen=(f"127.0.0.1:{edge_port}",))
        (work / "cloud").mkdir()
        (work / "edge").mkdir()
        cloud_admin = BrokerUrl("127.0.0.1", cloud_port, username=CLOUD_USER, password=CLOUD_PASSWORD)
        edge_url = BrokerUrl("127.0.0.1", edge_port)
        node_url = BrokerUrl("127.0.0.1", cloud_port, username=NODE, password=NODE_PASSWORD)
        native = bridge_sections(NODE, (node_url,)) if bridge == "native" else []
        say(f"starting the cloud broker, the edge broker and the bridge ({bridge})")
        with (
            process(broker_argv(kind, cloud_settings, work / "cloud"), work / "cloud.log"),
            process(broker_argv(kind, edge_settings, work / "edge", native), work / "edge.log"),
        ):
            if not (wait_ready(cloud_admin, 20) and wait_ready(edge_url, 20)):
                raise BenchError(f"bench: the {kind} brokers did not start; see {work}/*.log")
            with contextlib.ExitStack() as running:
                if bridge == "python":
                    running.enter_context(process([
                        sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", str(edge_url),
                        "--cloud", node_url.with_password()], work / "bridge.log"))
                wait_link(edge_url, NODE, up=True, native=bridge == "native")
                baseline = Route("baseline", cloud_admin, cloud_admin, "bench/baseline")
                bridged = Route("bridged", cloud_admin, edge_url, topics.link_down(NODE))
                say(f"baseline: {messages} QoS 1 messages through one broker")
                baseline_rate, _ = run_path(baseline, messages, None)
                say(f"bridged: {messages} QoS 1 messages cloud broker -> bridge -> edge broker")
                bridge_rate, _ = run_path(bridged, messages, None)
                latency_count = rate * 3
                say(f"latency at {rate} msg/s, {latency_count} messages on each path")
                _, base_lat = run_path(baseline, latency_count, rate)
                _, bridge_lat = run_path(bridged, latency_count, rate)
    base_p, bridge_p = percentiles(base_lat), percentiles(bridge_lat)
    return LinkReport(
        broker=kind, bridge=bridge, messages=messages,
        baseline_msgs_per_s=round(baseline_rate, 1), bridge_msgs_per_s=round(bridge_rate, 1),
        ratio=round(bridge_rate / baseline_rate, 3), rate_for_latency=rate,
        baseline_latency_ms=base_p, bridge_latency_ms=bridge_p,
        added_latency_ms={k: round(bridge_p[k] - base_p[k], 3) for k in base_p},
    )


def print_report(report: LinkReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "broker": report.broker,
            "bridge": report.bridge,
            "baseline_msgs_per_s": report.baseline_msgs_per_s,
            "bridge_msgs_per_s": report.bridge_msgs_per_s,
            "ratio": report.ratio,
            "added_latency_ms": report.added_latency_ms,
            "details": asdict(report),
        }))
        return
    print(f"link benchmark, {report.broker} brokers, --bridge {report.bridge}, {report.messages} QoS 1 messages per "
          "throughput run")
    print(f"  baseline (one broker)      {report.baseline_msgs_per_s:>10.0f} msg/s")
    print(f"  through the bridge         {report.bridge_msgs_per_s:>10.0f} msg/s   ratio {report.ratio:.2f} "
          f"(goal >= 0.8)")
    print(f"  latency at {report.rate_for_latency} msg/s     baseline p50 {report.baseline_latency_ms['p50']:.2f} ms "
          f"p99 {report.baseline_latency_ms['p99']:.2f} ms; bridged p50 {report.bridge_latency_ms['p50']:.2f} ms "
          f"p99 {report.bridge_latency_ms['p99']:.2f} ms")
    print(f"  added by the bridge        p50 {report.added_latency_ms['p50']:.2f} ms, "
          f"p99 {report.added_latency_ms['p99']:.2f} ms (goal p99 <= 5 ms)")
