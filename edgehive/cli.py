"""``edgehive``: one command to start and inspect an edgehive stack."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from broker import cli as broker_cli
from broker.embedded import Listen
from edgehive.launcher import Component, Supervisor

log = logging.getLogger("edgehive")


def _up(args: argparse.Namespace) -> int:
    components = [
        Component("cloud-broker", "broker", ("--listen", str(args.cloud_listen))),
        Component("edge-broker", "broker", ("--listen", str(args.edge_listen))),
    ]
    supervisor = Supervisor(components)
    supervisor.start()
    log.info(
        "edgehive is up: cloud broker mqtt://%s, edge broker mqtt://%s; Ctrl-C stops everything",
        args.cloud_listen,
        args.edge_listen,
    )
    return supervisor.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgehive", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run a whole stack on this machine with embedded defaults")
    up.add_argument("--cloud-listen", type=Listen.parse, default=Listen("127.0.0.1", 1883), metavar="HOST:PORT")
    up.add_argument("--edge-listen", type=Listen.parse, default=Listen("127.0.0.1", 1884), metavar="HOST:PORT")
    up.set_defaults(func=_up)

    broker = commands.add_parser("broker", help="run the embedded MQTT broker (amqtt)")
    broker_cli.add_arguments(broker)
    broker.set_defaults(func=broker_cli.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
