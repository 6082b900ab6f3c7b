"""The ``edgehive bench SCENARIO`` subcommands: their arguments here, each scenario imported only when it runs.

The scenarios import whole systems (the kubernetes client, podman helpers, amqtt); a scenario's own run is
the only one that pays for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from broker.launch import KINDS
from edgehive.bench.harness import BenchError, progress_printer

R = TypeVar("R")


def _run_bench(measure: Callable[[], R], report: Callable[[R, bool], None], args: argparse.Namespace) -> int:
    """Every benchmark the same way: its phases on stderr as it runs (``--json`` too: stdout is the report's
    alone), a last progress line with its time, and a BenchError as one line on stderr and status 1."""
    say = progress_printer(args.scenario)
    try:
        result = measure()
    except BenchError as exc:
        say("failed")
        print(f"edgehive bench: {exc}", file=sys.stderr)
        return 1
    say("done")
    report(result, args.json)
    return 0


def _link(args: argparse.Namespace) -> int:
    from edgehive.bench import link  # noqa: PLC0415 (a scenario is loaded when it runs)

    return _run_bench(lambda: link.bench_link(args.broker, args.messages, args.rate, progress=True,
                                              bridge=args.bridge),
                      link.print_report, args)


def _edge(args: argparse.Namespace) -> int:
    from edgehive.bench import edge  # noqa: PLC0415 (as above)

    return _run_bench(lambda: edge.bench_edge(args.objects, args.pods, args.restore_pods, progress=True,
                                              broker=args.broker),
                      edge.print_report, args)


def _cloud(args: argparse.Namespace) -> int:
    from edgehive.bench import cloud  # noqa: PLC0415 (as above)

    return _run_bench(lambda: cloud.bench_cloud(args.objects, args.pods, args.broker, progress=True),
                      cloud.print_report, args)


def _twin(args: argparse.Namespace) -> int:
    from edgehive.bench import twin  # noqa: PLC0415 (as above)

    return _run_bench(lambda: twin.bench_twin(twin.UPDATES if args.updates is None else args.updates,
                                               args.broker, progress=True),
                      twin.print_report, args)


def _mapper(args: argparse.Namespace) -> int:
    from edgehive.bench import mapper  # noqa: PLC0415 (as above)

    return _run_bench(lambda: mapper.bench_mapper(args.devices, args.properties, args.collect_cycle_ms, args.seconds,
                                                  args.change_rate, args.broker, progress=True),
                      mapper.print_report, args)


def _stack(args: argparse.Namespace) -> int:
    from edgehive.bench import stack  # noqa: PLC0415 (as above)

    return _run_bench(lambda: stack.bench_stack(args.runs, progress=True), stack.print_report, args)


def _footprint(args: argparse.Namespace) -> int:
    from edgehive.bench import footprint  # noqa: PLC0415 (as above)

    return _run_bench(lambda: footprint.bench_footprint(args.pods, progress=True, edge_start=args.edge_start,
                                                               edge_broker=args.edge_broker, bridge=args.bridge),
                      footprint.print_report, args)


def _scale(args: argparse.Namespace) -> int:
    from edgehive.bench import scale, scale_report  # noqa: PLC0415 (as above)

    if args.broker == "nats":
        from edgehive.bench import scale_ha, scale_ha_report  # noqa: PLC0415 (as above)

        pods = 2 if args.pods_per_node is None else args.pods_per_node
        return _run_bench(lambda: scale_ha.bench_scale_ha(args.nodes, args.replicas, pods),
                          scale_ha_report.print_ha_report, args)
    if args.replicas != 1:
        print("edgehive bench scale: --replicas needs --broker nats (the other brokers do not cluster)",
              file=sys.stderr)
        return 2
    # Progress always (on stderr; the JSON is alone on stdout): the run takes 10 minutes and more.
    pods = 10 if args.pods_per_node is None else args.pods_per_node
    return _run_bench(lambda: scale.bench_scale(args.nodes, pods, args.broker, progress=True),
                      scale_report.print_report, args)


def _workloads(args: argparse.Namespace) -> int:
    from edgehive.bench import workloads  # noqa: PLC0415 (as above)

    # Progress always (on stderr; the JSON is alone on stdout): real pods take minutes.
    return _run_bench(lambda: workloads.bench_workloads(args.replicas, args.broker, progress=True,
                                                                one_at_a_time=args.one_at_a_time),
                      workloads.print_report, args)


def _stream(args: argparse.Namespace) -> int:
    from edgehive.bench import streambench  # noqa: PLC0415 (as above)

    return _run_bench(lambda: streambench.bench_stream(args.rounds, args.log_mb, args.transfer_mb, args.broker,
                                                       progress=True, link_mbit=args.link_mbit),
                      streambench.print_report, args)


def _all(args: argparse.Namespace) -> int:
    from edgehive.bench import all as every  # noqa: PLC0415 (as above)
    try:
        report, rows = every.bench_all([k for k in args.only.split(",") if k], readable=not args.json)
    except BenchError as exc:
        print(f"edgehive bench all: {exc}", file=sys.stderr)
        return 1
    every.write_report(report, rows, args.out, args.json)
    return 1 if any("error" in value for value in report.values()) else 0


def add_arguments(bench_parser: argparse.ArgumentParser) -> None:
    scenarios = bench_parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    link = scenarios.add_parser("link", help="the bridge: throughput ratio and added latency")
    link.add_argument("--broker", choices=KINDS, default="amqtt")
    link.add_argument("--messages", type=int, default=5000, help="messages per throughput run (default 5000)")
    link.add_argument("--rate", type=int, default=1000, help="msg/s for the latency runs (default 1000)")
    link.add_argument("--bridge", choices=("native", "python"), default=None,
                      help="the bridge, as edgehive up's --bridge (default as there: native on mosquitto, python on "
                           "amqtt)")
    link.add_argument("--json", action="store_true", help="print one JSON object")
    link.set_defaults(func=_link)
    edge = scenarios.add_parser("edge", help="an edge node: commits/s, pod start, offline restore")
    edge.add_argument("--broker", choices=KINDS, default="amqtt")
    edge.add_argument("--objects", type=int, default=1000)
    edge.add_argument("--pods", type=int, default=20)
    edge.add_argument("--restore-pods", type=int, default=10)
    edge.add_argument("--json", action="store_true", help="print one JSON object")
    edge.set_defaults(func=_edge)
    cloud = scenarios.add_parser("cloud", help="API server to edge: commit rate against raw creates, pod start")
    cloud.add_argument("--broker", choices=KINDS, default="amqtt")
    cloud.add_argument("--objects", type=int, default=1000)
    cloud.add_argument("--pods", type=int, default=20)
    cloud.add_argument("--json", action="store_true", help="print one JSON object")
    cloud.set_defaults(func=_cloud)
    twin = scenarios.add_parser("twin", help="device updates through EventBus and DeviceTwin, and to the API server")
    twin.add_argument("--broker", choices=KINDS, default="amqtt")
    twin.add_argument("--updates", type=int, default=None, help="per measurement (default 20,000)")
    twin.add_argument("--json", action="store_true", help="print one JSON object")
    twin.set_defaults(func=_twin)
    mapper = scenarios.add_parser("mapper", help="Modbus devices through the Modbus mapper and DMI to the Device "
                                                 "status, against the same readings on $hw/events")
    mapper.add_argument("--devices", type=int, default=100, help="simulated Modbus devices (default 100)")
    mapper.add_argument("--properties", type=int, default=10, help="properties (registers) per device (default 10)")
    mapper.add_argument("--collect-cycle-ms", type=int, default=1000, help="every property's collectCycle "
                                                                          "(default 1000)")
    mapper.add_argument("--seconds", type=float, default=30.0, help="each phase's measuring window (default 30)")
    mapper.add_argument("--change-rate", type=float, default=5.0, help="register changes per second timed to the "
                                                                      "Device status (default 5)")
    mapper.add_argument("--broker", choices=KINDS, default="amqtt")
    mapper.add_argument("--json", action="store_true", help="print one JSON object")
    mapper.set_defaults(func=_mapper)
    stack = scenarios.add_parser("stack", help="image size, one component container's start, compose stack "
                                               "to healthy")
    stack.add_argument("--runs", type=int, default=3, help="component starts to take the median of")
    stack.add_argument("--json", action="store_true", help="print one JSON object")
    stack.set_defaults(func=_stack)
    footprint = scenarios.add_parser("footprint", help="PSS of one idle edge node's processes (edgehive up, N pods)")
    footprint.add_argument("--pods", type=int, default=10, help="pods running on the node while idle (default 10)")
    footprint.add_argument("--edge-start", choices=("fork", "exec"), default="fork",
                           help="how edgehive up starts the edge components (default fork, as edgehive up does)")
    footprint.add_argument("--edge-broker", choices=("mosquitto", "amqtt"), default="mosquitto",
                           help="the node's broker, as edgehive up's --edge-broker (default mosquitto, as there)")
    footprint.add_argument("--bridge", choices=("native", "python"), default=None,
                           help="the node's link, as edgehive up's --bridge (default as there: native on mosquitto, "
                                "python on amqtt)")
    footprint.add_argument("--json", action="store_true", help="print one JSON object")
    footprint.set_defaults(func=_footprint)
    scale = scenarios.add_parser("scale", help="one CloudHub and EdgeController with many simulated nodes: CPU, "
                                               "memory per node, a thundering herd's latency and resync time; "
                                               "with --broker nats, replicas and failovers")
    scale.add_argument("--nodes", type=int, default=1000, help="simulated edge nodes (default 1000)")
    scale.add_argument("--pods-per-node", type=int, default=None,
                       help="pods bound to each node (default 10; 2 with --broker nats, which runs two rounds)")
    scale.add_argument("--broker", choices=KINDS, default="mosquitto")
    scale.add_argument("--replicas", type=int, default=1,
                       help="with --broker nats: N=1, then N NATS members, CloudHub replicas and sharded "
                            "EdgeController replicas, with a CloudHub replica's and a member's SIGKILL (default 1)")
    scale.add_argument("--json", action="store_true", help="print one JSON object")
    scale.set_defaults(func=_scale)
    workloads = scenarios.add_parser("workloads", help="a Deployment through the scheduler and controller-manager "
                                                       "to all Ready, against plain nodeName pods")
    workloads.add_argument("--replicas", type=int, default=100, help="replicas, and plain pods (default 100)")
    workloads.add_argument("--one-at-a-time", type=int, default=10,
                           help="pods started one after the other first, for one pod's latency (default 10)")
    workloads.add_argument("--broker", choices=KINDS, default="amqtt")
    workloads.add_argument("--json", action="store_true", help="print one JSON object")
    workloads.set_defaults(func=_workloads)
    stream = scenarios.add_parser("stream", help="kubectl exec, logs and port-forward through the stream tunnel, "
                                                 "against podman exec, podman logs and a direct connection")
    stream.add_argument("--rounds", type=int, default=20, help="kubectl execs (and podman execs) timed (default 20)")
    stream.add_argument("--log-mb", type=int, default=50, help="the log read with kubectl logs, MB (default 50)")
    stream.add_argument("--transfer-mb", type=int, default=50, help="the download through port-forward, MB "
                                                                    "(default 50)")
    stream.add_argument("--broker", choices=KINDS, default="amqtt")
    stream.add_argument("--link-mbit", type=float, default=100.0,
                        help="also measure port-forward and logs with the node's link limited to this many Mbit/s, "
                             "against the pod across the same link (default 100; 0 for none; needs root)")
    stream.add_argument("--json", action="store_true", help="print one JSON object")
    stream.set_defaults(func=_stream)
    every = scenarios.add_parser("all", help="every scenario above, one JSON report and a summary table")
    every.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    every.add_argument("--out", type=Path, default=Path("edgehive-bench.json"), help="where to write the JSON report")
    every.add_argument("--json", action="store_true", help="print the JSON report instead of the tables")
    every.set_defaults(func=_all)
