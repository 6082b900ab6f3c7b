"""``edgehive``: one command to run, join and inspect an edgehive stack."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from broker import cli as broker_cli
from broker.launch import KINDS
from edgehive import (
    bench,
    bench_all,
    bench_cloud,
    bench_edge,
    bench_footprint,
    bench_scale,
    bench_stack,
    bench_twin,
    identity_cli,
    run,
    stack,
    twin_cli,
)
from edgehive.join import EdgeIdentity, JoinError, renew_if_due
from edgehive.launcher import Child, Supervisor
from edgehive.localcluster import LocalClusterError
from runtime import logs
from runtime.address import Address
from runtime.connection import Connection
from runtime.settings import SettingsError

log = logging.getLogger("edgehive")
R = TypeVar("R")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgehive"


def _supervise(children: list[Child], watches: list[Connection], state_dir: Path, banner: str) -> int:
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def close_watches() -> None:
        for watch in watches:
            watch.close(drain_timeout=0)

    supervisor = Supervisor(children, status_file=state_dir / "status.json", log_dir=log_dir,
                            before_stop=close_watches)
    for watch in watches:
        watch.start()
    print(f"{banner}; logs in {log_dir}; Ctrl-C stops everything", flush=True)
    return supervisor.run()


def _up(args: argparse.Namespace) -> int:
    logs.setup("edgehive-up", "info")
    settings = stack.StackSettings(state_dir=args.state_dir, cloud_listen=args.cloud_listen,
                                   edge_listen=args.edge_listen, node=args.node, kubeconfig=args.kubeconfig,
                                   apiserver_port=args.apiserver_port, etcd_port=args.etcd_port)
    try:
        children, watches = stack.build(settings)
    except LocalClusterError as exc:
        print(f"edgehive up: {exc}", file=sys.stderr)
        return 1
    kubeconfig = settings.kubeconfig or settings.state_dir / "apiserver" / "kubeconfig"
    return _supervise(children, watches, settings.state_dir,
                      f"edgehive up: node {settings.node}; cloud broker mqtt://{settings.cloud_listen}, edge broker "
                      f"mqtt://{settings.edge_listen}\n  kubectl --kubeconfig {kubeconfig} get nodes")


def _edge(args: argparse.Namespace) -> int:
    logs.setup("edgehive-edge", "info")
    if args.device_listen and not args.device_users:
        print("edgehive edge: --device-listen needs --device-users (create it with edgehive passwd)", file=sys.stderr)
        return 2
    try:
        device_args: tuple[str, ...] = ()
        if args.device_listen:
            device_args = ("--device-listen", args.device_listen, "--device-password-file", str(args.device_users))
            if args.device_tls_cert:
                device_args += ("--device-tls-cert", str(args.device_tls_cert), "--device-tls-key",
                                str(args.device_tls_key))
        children, watches = stack.build_joined_edge(args.state_dir, args.edge_listen, device_args)
    except FileNotFoundError as exc:
        print(f"edgehive edge: {exc}", file=sys.stderr)
        return 1
    threading.Thread(target=_keep_identity_fresh, args=(EdgeIdentity(args.state_dir),), name="renewal",
                     daemon=True).start()
    return _supervise(children, watches, args.state_dir,
                      f"edgehive edge: the node joined in {args.state_dir}; its broker mqtt://{args.edge_listen}")


def _keep_identity_fresh(identity: EdgeIdentity, every_s: float = 3600.0) -> None:
    """Renew the node's certificate when a third of its life is left; a failure is retried an hour later."""
    while True:
        try:
            if renew_if_due(identity):
                log.info("renewed the node's certificate; connections use it from their next connect")
        except (JoinError, OSError) as exc:
            log.warning("could not renew the node's certificate (%s); retrying in %.0f s", exc, every_s)
        time.sleep(every_s)


def _run_bench(measure: Callable[[], R], report: Callable[[R, bool], None], as_json: bool) -> int:
    """Every benchmark the same way: a BenchError is one line on stderr and status 1."""
    try:
        result = measure()
    except bench.BenchError as exc:
        print(f"edgehive bench: {exc}", file=sys.stderr)
        return 1
    report(result, as_json)
    return 0


def _bench(args: argparse.Namespace) -> int:
    return _run_bench(lambda: bench.bench_link(args.broker, args.messages, args.rate, progress=not args.json),
                      bench.print_report, args.json)


def _bench_edge(args: argparse.Namespace) -> int:
    return _run_bench(lambda: bench_edge.bench_edge(args.objects, args.pods, args.restore_pods,
                                                    progress=not args.json, broker=args.broker),
                      bench_edge.print_report, args.json)


def _bench_cloud(args: argparse.Namespace) -> int:
    return _run_bench(lambda: bench_cloud.bench_cloud(args.objects, args.pods, args.broker, progress=not args.json),
                      bench_cloud.print_report, args.json)


def _bench_twin(args: argparse.Namespace) -> int:
    return _run_bench(lambda: bench_twin.bench_twin(args.updates, args.broker, progress=not args.json),
                      bench_twin.print_report, args.json)


def _bench_stack(args: argparse.Namespace) -> int:
    return _run_bench(lambda: bench_stack.bench_stack(args.runs, progress=not args.json),
                      bench_stack.print_report, args.json)


def _bench_all(args: argparse.Namespace) -> int:
    try:
        report, rows = bench_all.bench_all([k for k in args.only.split(",") if k], progress=not args.json)
    except bench.BenchError as exc:
        print(f"edgehive bench all: {exc}", file=sys.stderr)
        return 1
    bench_all.write_report(report, rows, args.out, args.json)
    return 1 if any("error" in value for value in report.values()) else 0


def _bench_footprint(args: argparse.Namespace) -> int:
    return _run_bench(lambda: bench_footprint.bench_footprint(args.pods, progress=not args.json),
                      bench_footprint.print_report, args.json)


def _bench_scale(args: argparse.Namespace) -> int:
    # Progress always (on stderr; the JSON is alone on stdout): the run takes 10 minutes and more.
    return _run_bench(lambda: bench_scale.bench_scale(args.nodes, args.pods_per_node, args.broker, progress=True),
                      bench_scale.print_report, args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgehive", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run a local stack (brokers, bridge) with embedded defaults")
    up.add_argument("--cloud-listen", type=Address.parse, default=Address("127.0.0.1", 1883), metavar="HOST:PORT")
    up.add_argument("--edge-listen", type=Address.parse, default=Address("127.0.0.1", 1884), metavar="HOST:PORT")
    up.add_argument("--node", default="edge-1", help="name of the local edge node (default edge-1)")
    up.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting a local API server")
    up.add_argument("--apiserver-port", type=int, default=6443, help="local API server port (default 6443)")
    up.add_argument("--etcd-port", type=int, default=2379, help="local etcd client port; peer is the next one")
    up.add_argument("--state-dir", type=Path, default=default_state_dir(),
                    help="credentials, logs and status.json (default $XDG_STATE_HOME/edgehive)")
    up.set_defaults(func=_up)

    edge = commands.add_parser("edge", help="run a joined edge node's processes (after edgehive join)")
    edge.add_argument("--state-dir", type=Path, default=Path("edgehive-edge"), help="what edgehive join wrote")
    edge.add_argument("--edge-listen", type=Address.parse, default=Address("127.0.0.1", 1884), metavar="HOST:PORT",
                      help="the node's broker, for its components and devices (default loopback 1884)")
    edge.add_argument("--device-listen", metavar="HOST:PORT",
                      help="also accept devices on other hosts here: users from --device-users, $hw/events/ only")
    edge.add_argument("--device-users", type=Path, help="device users (edgehive passwd FILE USER)")
    edge.add_argument("--device-tls-cert", type=Path, help="TLS for --device-listen")
    edge.add_argument("--device-tls-key", type=Path)
    edge.set_defaults(func=_edge)

    broker = commands.add_parser("broker", help="run the embedded MQTT broker, or write a mosquitto config")
    broker_cli.add_broker_arguments(broker)
    broker.set_defaults(func=broker_cli.broker_main)

    bridge = commands.add_parser("bridge", help="run one edge node's bridge to the cloud broker")
    broker_cli.add_bridge_arguments(bridge)
    bridge.set_defaults(func=broker_cli.bridge_main)

    passwd = commands.add_parser("passwd", help="add a user to a broker password file, or change its password")
    broker_cli.add_passwd_arguments(passwd)
    passwd.set_defaults(func=broker_cli.passwd_main)
    identity_cli.add_commands(commands)
    twin_cli.add_commands(commands)

    run_parser = commands.add_parser("run", help="run one component in the foreground (a container's command)")
    run_parser.add_argument("component", choices=run.COMPONENTS, metavar="COMPONENT",
                            help=", ".join(run.COMPONENTS))
    run_parser.add_argument("args", nargs=argparse.REMAINDER, help="the component's own flags (see its --help)")
    run_parser.set_defaults(func=lambda a: run.run(a.component, a.args))

    bench_parser = commands.add_parser("bench", help="measure edgehive against a baseline from the same run")
    scenarios = bench_parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    link = scenarios.add_parser("link", help="the bridge: throughput ratio and added latency")
    link.add_argument("--broker", choices=KINDS, default="amqtt")
    link.add_argument("--messages", type=int, default=5000, help="messages per throughput run (default 5000)")
    link.add_argument("--rate", type=int, default=1000, help="msg/s for the latency runs (default 1000)")
    link.add_argument("--json", action="store_true", help="print one JSON object")
    link.set_defaults(func=_bench)
    edge = scenarios.add_parser("edge", help="an edge node: commits/s, pod start, offline restore")
    edge.add_argument("--broker", choices=KINDS, default="amqtt")
    edge.add_argument("--objects", type=int, default=1000)
    edge.add_argument("--pods", type=int, default=20)
    edge.add_argument("--restore-pods", type=int, default=10)
    edge.add_argument("--json", action="store_true", help="print one JSON object")
    edge.set_defaults(func=_bench_edge)
    cloud = scenarios.add_parser("cloud", help="API server to edge: commit rate against raw creates, pod start")
    cloud.add_argument("--broker", choices=KINDS, default="amqtt")
    cloud.add_argument("--objects", type=int, default=1000)
    cloud.add_argument("--pods", type=int, default=20)
    cloud.add_argument("--json", action="store_true", help="print one JSON object")
    cloud.set_defaults(func=_bench_cloud)
    twin = scenarios.add_parser("twin", help="device updates through EventBus and DeviceTwin, and to the API server")
    twin.add_argument("--broker", choices=KINDS, default="amqtt")
    twin.add_argument("--updates", type=int, default=5000)
    twin.add_argument("--json", action="store_true", help="print one JSON object")
    twin.set_defaults(func=_bench_twin)
    stack_bench = scenarios.add_parser("stack", help="image size, one component container's start, compose stack "
                                                      "to healthy")
    stack_bench.add_argument("--runs", type=int, default=3, help="component starts to take the median of")
    stack_bench.add_argument("--json", action="store_true", help="print one JSON object")
    stack_bench.set_defaults(func=_bench_stack)
    footprint = scenarios.add_parser("footprint", help="PSS of one idle edge node's processes (edgehive up, N pods)")
    footprint.add_argument("--pods", type=int, default=10, help="pods running on the node while idle (default 10)")
    footprint.add_argument("--json", action="store_true", help="print one JSON object")
    footprint.set_defaults(func=_bench_footprint)
    scale = scenarios.add_parser("scale", help="one CloudHub and EdgeController with many simulated nodes: CPU, "
                                               "memory per node, a thundering herd's latency and resync time")
    scale.add_argument("--nodes", type=int, default=1000, help="simulated edge nodes (default 1000)")
    scale.add_argument("--pods-per-node", type=int, default=10, help="pods bound to each node (default 10)")
    scale.add_argument("--broker", choices=KINDS, default="mosquitto")
    scale.add_argument("--json", action="store_true", help="print one JSON object")
    scale.set_defaults(func=_bench_scale)
    every = scenarios.add_parser("all", help="every scenario above, one JSON report and a summary table")
    every.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    every.add_argument("--out", type=Path, default=Path("edgehive-bench.json"), help="where to write the JSON report")
    every.add_argument("--json", action="store_true", help="print the JSON report instead of the tables")
    every.set_defaults(func=_bench_all)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except SettingsError as exc:
        print(f"edgehive {args.command}: {exc}", file=sys.stderr)
        return 2
    return status
