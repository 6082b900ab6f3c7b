"""The ``broker`` and ``passwd`` commands, shared by ``python -m broker`` and ``edgehive``.

The ``bridge`` command is broker/bridgecli.py: the bridge's process must not load the embedded broker (amqtt,
asyncio, websockets) that this module's ``broker`` command needs.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from broker import nats
from broker.embedded import BrokerSettings, run
from broker.mosquitto import write_config
from broker.passwords import set_password
from runtime import logs, settings


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, BrokerSettings)


def broker_main(args: argparse.Namespace) -> int:
    s = settings.load(BrokerSettings, args)
    logs.setup("broker", s.log_level, s.log_format)
    if s.mosquitto_config:
        conf = write_config(s, Path(s.mosquitto_config))
        print(f"wrote {conf}; run: mosquitto -c {conf}")
        return 0
    if s.nats_config:
        try:
            conf = nats.write_config(s, Path(s.nats_config))
        except nats.NatsConfigError as exc:
            print(f"edgehive broker: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {conf}; run: nats-server -c {conf}")
        return 0
    return run(s)


def add_passwd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="password file (created if missing)")
    parser.add_argument("user", help="user name: a node's name, or a cloud user such as 'cloud'")
    parser.add_argument("--password", help="the password (default: read from the terminal or stdin)")
    parser.add_argument("--bcrypt", action="store_true",
                        help="store a bcrypt hash, which NATS can check (and amqtt; mosquitto cannot)")


def passwd_main(args: argparse.Namespace) -> int:
    password = args.password
    if password is None:
        password = getpass.getpass(f"password for {args.user}: ") if sys.stdin.isatty() else sys.stdin.readline()
        password = password.rstrip("\n")
    if not password:
        print("edgehive passwd: an empty password is not allowed", file=sys.stderr)
        return 2
    set_password(args.file, args.user, password, use_bcrypt=args.bcrypt)
    print(f"{args.file}: set the password of {args.user}")
    return 0
