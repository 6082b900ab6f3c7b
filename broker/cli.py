"""Command-line options of the embedded broker, shared by ``python -m broker`` and ``edgehive broker``."""

from __future__ import annotations

import argparse

from broker.embedded import BrokerSettings, Listen, run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        action="append",
        type=Listen.parse,
        metavar="HOST:PORT",
        help="address to accept MQTT clients on; repeatable (default 127.0.0.1:1883)",
    )


def settings_from(args: argparse.Namespace) -> BrokerSettings:
    return BrokerSettings(listen=tuple(args.listen)) if args.listen else BrokerSettings()


def main(args: argparse.Namespace) -> int:
    run(settings_from(args))
    return 0
