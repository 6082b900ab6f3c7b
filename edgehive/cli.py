"""``edgehive``: one command to run, join and inspect an edgehive stack.

Only the subcommand given is set up and imported. Every container runs its component through
``edgehive run NAME``, and a component started that way loads no more modules than ``python -m``
loads for it (tests/unit/test_run_imports.py): so each command here is a name, a help line and
the function that adds its arguments, imported when that command is the one given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runtime.settings import SettingsError

AddArguments = Callable[[argparse.ArgumentParser], None]


def _from(target: str) -> AddArguments:
    """``module:function``, imported only when called."""
    module, _, function = target.partition(":")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module), function)(parser)

    return add_arguments


def _broker(parser: argparse.ArgumentParser) -> None:
    from broker import cli  # noqa: PLC0415 (a command is loaded when it runs)

    cli.add_broker_arguments(parser)
    parser.set_defaults(func=cli.broker_main)


def _bridge(parser: argparse.ArgumentParser) -> None:
    from broker import bridgecli  # noqa: PLC0415 (as above)

    bridgecli.add_bridge_arguments(parser)
    parser.set_defaults(func=bridgecli.bridge_main)


def _passwd(parser: argparse.ArgumentParser) -> None:
    from broker import cli  # noqa: PLC0415 (as above)

    cli.add_passwd_arguments(parser)
    parser.set_defaults(func=cli.passwd_main)


def _run(parser: argparse.ArgumentParser) -> None:
    from edgehive import run  # noqa: PLC0415 (as above)

    parser.add_argument("component", choices=run.COMPONENTS, metavar="COMPONENT", help=", ".join(run.COMPONENTS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the component's own flags (see its --help)")
    parser.set_defaults(func=lambda a: run.run(a.component, a.args))


def _mapper(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", choices=("modbus",), help="the device protocol the mapper speaks")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the mapper's own flags (see its --help)")
    parser.set_defaults(func=_run_mapper)


def _run_mapper(args: argparse.Namespace) -> int:
    # By name, as `edgehive run` loads a component: the mapper's gRPC is its own, not the CLI's.
    status: int = importlib.import_module(f"edge.mappers.{args.protocol}.main").main(args.args)
    return status


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: AddArguments
    """Adds the command's arguments and its ``func`` (args -> exit status)."""


COMMANDS = (
    Command("up", "run a local stack (brokers, bridge) with embedded defaults",
            _from("edgehive.up_cli:add_up_arguments")),
    Command("edge", "run a joined edge node's processes (after edgehive join)",
            _from("edgehive.up_cli:add_edge_arguments")),
    Command("broker", "run the embedded MQTT broker, or write a mosquitto config", _broker),
    Command("bridge", "run one edge node's bridge to the cloud broker", _bridge),
    Command("passwd", "add a user to a broker password file, or change its password", _passwd),
    Command("init", "set up the cloud: cluster CA, broker certificate, CRDs (idempotent)",
            _from("edgehive.identity_cli:add_init_arguments")),
    Command("gettoken", "print a join token for one edge node", _from("edgehive.identity_cli:add_gettoken_arguments")),
    Command("join", "give this edge node its identity from the cloud",
            _from("edgehive.identity_cli:add_join_arguments")),
    Command("status", "every edge node: ready, link, last keepalive, queues, outbox, pods",
            _from("edgehive.identity_cli:add_status_arguments")),
    Command("renew", "replace this node's certificate before it expires",
            _from("edgehive.identity_cli:add_renew_arguments")),
    Command("node", "edge nodes: list, add (a Node before the first registration), describe, revoke",
            _from("edgehive.identity_cli:add_node_arguments")),
    Command("twin", "a device's twin: get its desired and reported values, or set desired",
            _from("edgehive.twin_cli:add_arguments")),
    Command("mapper", "run a device mapper (modbus) that serves its devices to this node through DMI", _mapper),
    Command("run", "run one component in the foreground (a container's command)", _run),
    Command("bench", "measure edgehive against a baseline from the same run",
            _from("edgehive.bench.cli:add_arguments")),
)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Every command listed; only the one ``argv`` names (if any) with its arguments."""
    given = next((arg for arg in argv if not arg.startswith("-")), None)  # the command comes first; only -h before
    parser = argparse.ArgumentParser(prog="edgehive", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help)
        if command.name == given:
            command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        status: int = args.func(args)
    except SettingsError as exc:
        print(f"edgehive {args.command}: {exc}", file=sys.stderr)
        return 2
    return status
