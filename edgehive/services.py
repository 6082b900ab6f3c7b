"""The programs a container runs that are not bus components: a broker and the local control plane.

Each wraps other processes (mosquitto; etcd, kube-apiserver, kube-controller-manager and kube-scheduler),
keeps the container's health file (runtime.healthfile) true to them, passes SIGTERM on, and exits non-zero
when a wrapped process dies on its own, so the container's restart policy takes over.
Users and ports come from flags or the environment, so a compose file needs no
configuration files.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from broker import metrics
from broker.embedded import BrokerSettings
from broker.embedded import run as run_amqtt
from broker.mosquitto import write_config
from broker.mosquitto_process import MosquittoProcess
from broker.mosquitto_sys import SysReader
from broker.passwords import set_password
from edgehive.localcluster import LocalApiServer, LocalClusterError
from runtime import logs
from runtime.address import Address
from runtime.healthfile import HealthFile, Probe
from runtime.metrics import serve as serve_metrics

log = logging.getLogger("edgehive.services")

STOP_TIMEOUT_S = 20.0


def state_dir() -> Path:
    return Path(os.environ.get("EDGEHIVE_STATE_DIR", "/var/lib/edgehive"))


def parse_users(value: str) -> dict[str, str]:
    """``user:password`` pairs separated by commas or spaces; a malformed pair is an error that names it."""
    users: dict[str, str] = {}
    for pair in value.replace(",", " ").split():
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"broker user {pair.split(':')[0]!r}: write USER:PASSWORD")
        users[user] = password
    return users


class Child(Protocol):
    """What supervise needs of a process: Popen, or a wrapper that restarts its own."""

    @property
    def args(self) -> Any: ...
    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def program(child: Child) -> str:
    args = child.args
    return str(args[0]) if isinstance(args, list | tuple) else str(args)


def supervise(name: str, children: Sequence[Child], health: HealthFile) -> int:
    """Wait until a stop signal (stop every child, exit 0) or a child's own exit (stop the rest, exit 1)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: %s received, stopping", name, signal.Signals(signum).name)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    status = 0
    while not stopping.wait(0.2):
        dead = [c for c in children if c.poll() is not None]
        if dead:
            log.error("%s: %s exited with %s; stopping the rest so the container restarts", name,
                      program(dead[0]), dead[0].poll())
            status = 1
            break
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in reversed(children):
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s: %s ignored SIGTERM for %.0f s; killing it", name, program(child), STOP_TIMEOUT_S)
            child.kill()
            child.wait()
    health.close()
    return status


def tcp_probe(port: int) -> Probe:
    def probe() -> tuple[str, dict[str, Any]]:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return "up", {"port": port}
        except OSError as exc:
            return "down", {"reason": f"port {port}: {exc}"}
    return probe


def broker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgehive run broker", description=(
        "An MQTT broker with edgehive's users and link ACL: mosquitto (default), the embedded amqtt broker, or "
        "a member of a NATS cluster (the cloud broker of a large fleet; route secret from "
        "$EDGEHIVE_NATS_ROUTE_SECRET). Users come from $EDGEHIVE_BROKER_USERS as USER:PASSWORD pairs; without "
        "users it is anonymous (an edge node's local broker)."))
    parser.add_argument("--kind", choices=("mosquitto", "amqtt", "nats"),
                        default=os.environ.get("EDGEHIVE_BROKER_KIND") or "mosquitto")
    parser.add_argument("--listen", type=Address.parse, default=Address("0.0.0.0", 1883), metavar="HOST:PORT")
    parser.add_argument("--cloud-users", default="cloud", help="users allowed every topic (comma-separated)")
    parser.add_argument("--tls-cert", help="server certificate: the listener uses TLS")
    parser.add_argument("--tls-key", help="server key")
    parser.add_argument("--tls-ca", help="the CA that signs node identities (with --client-certs)")
    parser.add_argument("--client-certs", action="store_true",
                        help="identities are client certificates (CN = user) instead of passwords")
    parser.add_argument("--crl-file", help="revoked certificates; followed: revoked clients are cut off")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics on /metrics there "
                        "(mosquitto's come from its $SYS topics, over a private Unix socket)")
    parser.add_argument("--nats-name", default="nats-1", help="--kind nats: this member's server_name (unique)")
    parser.add_argument("--nats-cluster", metavar="HOST:PORT", help="--kind nats: where this member accepts routes")
    parser.add_argument("--nats-routes", action="append", default=[], metavar="HOST:PORT",
                        help="--kind nats: another member's route address (repeat for each)")
    parser.add_argument("--log-level", default=os.environ.get("EDGEHIVE_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    logs.setup("broker", args.log_level)
    if args.kind != "nats" and (args.nats_cluster or args.nats_routes):
        print("edgehive run broker: --nats-cluster and --nats-routes need --kind nats", file=sys.stderr)
        return 2
    try:
        users = parse_users(os.environ.get("EDGEHIVE_BROKER_USERS", ""))
    except ValueError as exc:
        print(f"edgehive run broker: $EDGEHIVE_BROKER_USERS: {exc}", file=sys.stderr)
        return 2
    directory = state_dir() / "broker"
    directory.mkdir(parents=True, exist_ok=True)
    password_file = None
    if users:
        password_file = directory / "passwd"
        password_file.unlink(missing_ok=True)  # the environment is the truth: a removed user is gone
        for user, password in users.items():
            set_password(password_file, user, password, use_bcrypt=args.kind == "nats")  # NATS checks bcrypt only
    nats_args: dict[str, Any] = {}
    if args.kind == "nats":
        from edgehive import natsmember  # noqa: PLC0415 (only a NATS member needs it)

        secret = natsmember.route_secret_file(directory)
        nats_args = {"nats_name": args.nats_name, "nats_cluster": args.nats_cluster,
                     "nats_routes": tuple(args.nats_routes),
                     "nats_route_secret_file": str(secret) if secret else None}
    try:
        settings = BrokerSettings(listen=(str(args.listen),),
                                  password_file=str(password_file) if password_file else None,
                                  cloud_users=tuple(u for u in args.cloud_users.split(",") if u),
                                  tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
                                  client_certs=args.client_certs, crl_file=args.crl_file,
                                  metrics_listen=args.metrics_listen, **nats_args)
    except ValueError as exc:
        print(f"edgehive run broker: {exc}", file=sys.stderr)
        return 2
    if args.kind == "nats":
        return natsmember.run_member(settings, users, directory)
    log.info("%s broker on %s, %s", args.kind, args.listen, "client certificates with the link ACL"
             if args.client_certs else f"users {', '.join(sorted(users))} with the link ACL" if users else "anonymous")
    if args.kind == "amqtt":
        return run_amqtt(settings)
    sys_socket = directory / "mosquitto" / "sys.sock" if args.metrics_listen else None
    conf = write_config(settings, directory / "mosquitto", sys_socket)
    if os.geteuid() == 0:
        # Started as root, mosquitto becomes user 'mosquitto', which cannot read private state or
        # certificate directories; the image runs it as its own non-root user instead.
        log.warning("running mosquitto as root; run this as an unprivileged user in production")
        conf.write_text(conf.read_text() + "user root\n")
    child = MosquittoProcess(["mosquitto", "-c", str(conf)], Path(args.crl_file) if args.crl_file else None)
    if args.metrics_listen and sys_socket is not None:
        reader = SysReader(sys_socket).start()
        serve_metrics(args.metrics_listen, metrics.BrokerCollector(
            "mosquitto", lambda: {**reader.stats(), "restarts": child.restarts}))
    health = HealthFile.from_env("broker", tcp_probe(args.listen.port))
    return supervise("broker", [child], health)


def apiserver_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgehive run apiserver", description=(
        "etcd, kube-apiserver, kube-controller-manager and kube-scheduler in one container, for the compose stack "
        "where no k3s image can be pulled. "
        "Writes an admin kubeconfig for the other containers and one for the host once the API is ready."))
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--san", action="append", default=[], metavar="DNS:NAME|IP:ADDR",
                        help="an extra name in the serving certificate (repeatable); "
                             "DNS:apiserver, DNS:localhost and IP:127.0.0.1 are always in")
    parser.add_argument("--kubeconfig-out", type=Path, default=Path("/etc/edgehive/kube/kubeconfig"))
    parser.add_argument("--server-url", default="https://apiserver:6443",
                        help="the address other containers use, written into --kubeconfig-out")
    parser.add_argument("--host-url", default="https://127.0.0.1:6443",
                        help="the address the host uses (the published port), written into "
                             "--kubeconfig-out with the suffix .host")
    parser.add_argument("--log-level", default=os.environ.get("EDGEHIVE_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    logs.setup("apiserver", args.log_level)
    sans = ("DNS:apiserver", "DNS:localhost", "IP:127.0.0.1", *args.san)
    local = LocalApiServer(state_dir() / "apiserver", port=args.port, bind_address="0.0.0.0", sans=sans,
                           control_plane=True)
    try:
        local.prepare()
    except LocalClusterError as exc:
        print(f"edgehive run apiserver: {exc}", file=sys.stderr)
        return 2
    etcd = subprocess.Popen(local.etcd_argv())
    apiserver = subprocess.Popen(local.apiserver_argv())
    # The controller-manager exits when the API server does not answer within 10 s of its start, which would
    # restart the whole container: it starts once the API server is ready (or has died: supervise sees that).
    while not local.ready() and etcd.poll() is None and apiserver.poll() is None:
        time.sleep(0.2)
    controller_manager = subprocess.Popen(local.controller_manager_argv())
    scheduler = subprocess.Popen(local.scheduler_argv())
    exported = threading.Event()

    def probe() -> tuple[str, dict[str, Any]]:
        if not local.ready():
            return "down", {"reason": "kube-apiserver not ready"}
        if not local.controller_manager_healthy():
            return "down", {"reason": "kube-controller-manager not healthy"}
        if not local.scheduler_healthy():
            return "down", {"reason": "kube-scheduler not healthy"}
        if not exported.is_set():  # written once the API answers, so a reader can use it at once
            local.write_kubeconfig(args.kubeconfig_out, args.server_url)
            local.write_kubeconfig(args.kubeconfig_out.with_name(args.kubeconfig_out.name + ".host"), args.host_url)
            log.info("API server ready; kubeconfigs in %s(.host)", args.kubeconfig_out)
            exported.set()
        return "up", {}

    health = HealthFile.from_env("apiserver", probe)
    return supervise("apiserver", [etcd, apiserver, controller_manager, scheduler], health)
