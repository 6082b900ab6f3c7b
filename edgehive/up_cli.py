"""``edgehive up`` and ``edgehive edge``: a whole local stack, or a joined node's processes, under the supervisor."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from broker.launch import BrokerMissing
from edgehive import stack
from edgehive.forked import ForkServer, module_of
from edgehive.join import EdgeIdentity, JoinError, renew_if_due
from edgehive.launcher import Child, Supervisor
from edgehive.localcluster import LocalClusterError
from edgehive.natsstack import BROKERS, NatsLayout
from runtime import logs
from runtime.address import Address
from runtime.connection import Connection

log = logging.getLogger("edgehive")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgehive"


def _supervise(children: list[Child], watches: list[Connection], state_dir: Path, banner: str,
               edge_start: str = "fork") -> int:
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    forkserver = None
    if edge_start == "fork":
        modules = sorted({m for c in children if c.forked and (m := module_of(c.argv)) is not None})
        forkserver = ForkServer(modules, log_file=log_dir / "forkserver.log") if modules else None
    else:
        for child in children:
            child.forked = False

    def close_watches() -> None:
        for watch in watches:
            watch.close(drain_timeout=0)

    supervisor = Supervisor(children, status_file=state_dir / "status.json", log_dir=log_dir,
                            before_stop=close_watches, forkserver=forkserver)
    for watch in watches:
        watch.start()
    print(f"{banner}; logs in {log_dir}; Ctrl-C stops everything", flush=True)
    return supervisor.run()


def up_main(args: argparse.Namespace) -> int:
    logs.setup("edgehive-up", "info")
    problem = _stream_problem(args) or _broker_problem(args) or _bridge_problem(args)
    if problem:
        print(f"edgehive up: {problem}", file=sys.stderr)
        return 2
    serving_ca = (args.stream_serving_ca, args.stream_serving_ca_key) if args.stream_serving_ca else None
    settings = stack.StackSettings(state_dir=args.state_dir, cloud_listen=args.cloud_listen,
                                   edge_listen=args.edge_listen, node=args.node, kubeconfig=args.kubeconfig,
                                   apiserver_port=args.apiserver_port, etcd_port=args.etcd_port,
                                   controller_manager_port=args.controller_manager_port,
                                   scheduler_port=args.scheduler_port, stream_port=args.stream_port,
                                   stream_address=args.stream_address, stream_serving_ca=serving_ca,
                                   stream_client_cn=args.stream_client_cn, broker=args.broker,
                                   replicas=args.replicas, nats_port=_nats_port(args),
                                   router_listen=args.router_listen, status_object=args.status_object,
                                   edge_broker=args.edge_broker, bridge=args.bridge)
    try:
        children, watches = stack.build(settings)
    except (LocalClusterError, BrokerMissing) as exc:
        print(f"edgehive up: {exc}", file=sys.stderr)
        return 1
    kubeconfig = settings.kubeconfig or settings.state_dir / "apiserver" / "kubeconfig"
    cloud = f"mqtt://{settings.cloud_listen}"
    if settings.broker == "nats":
        cloud = NatsLayout(settings.cloud_listen, settings.nats_port, settings.replicas).hosts()
        cloud = f"mqtt://{cloud} (NATS)"
    return _supervise(children, watches, settings.state_dir,
                      f"edgehive up: node {settings.node}; cloud broker {cloud}, edge broker "
                      f"mqtt://{settings.edge_listen}\n  kubectl --kubeconfig {kubeconfig} get nodes", args.edge_start)


def _stream_problem(args: argparse.Namespace) -> str:
    """What is wrong with the stream server's flags, before anything starts ("" when nothing)."""
    user_flags = [f for f in ("stream_address", "stream_serving_ca", "stream_serving_ca_key", "stream_client_cn")
                  if getattr(args, f)]
    if user_flags and args.kubeconfig is None:
        return (f"--{user_flags[0].replace('_', '-')} is for your own cluster (--kubeconfig); the local control "
                "plane's stream server is set up already (--stream-port)")
    if bool(args.stream_serving_ca) != bool(args.stream_serving_ca_key):
        return "--stream-serving-ca and --stream-serving-ca-key go together"
    if (args.stream_serving_ca or args.stream_client_cn) and not args.stream_address:
        return "--stream-serving-ca and --stream-client-cn set up the stream server that --stream-address runs"
    return ""


def _broker_problem(args: argparse.Namespace) -> str:
    """What ``edgehive up`` cannot run of --broker, --replicas and --nats-port ("" when nothing)."""
    if args.replicas < 1:
        return f"--replicas must be at least 1, not {args.replicas}"
    if args.replicas > 1 and args.broker != "nats":
        return (f"--replicas {args.replicas} needs --broker nats: CloudHub replicas share the fleet over a NATS "
                f"cluster of as many members; {args.broker} does not cluster")
    if args.nats_port is not None and args.broker != "nats":
        return "--nats-port is for --broker nats"
    if args.broker == "nats":
        low = _nats_port(args)
        high = low + 2 * args.replicas - 1
        mqtt = range(args.cloud_listen.port, args.cloud_listen.port + args.replicas)
        if high > 65535 or mqtt.stop - 1 > 65535:
            return f"--nats-port {low} / --cloud-listen: {args.replicas} members need ports past 65535"
        if any(low <= port <= high for port in mqtt):
            return (f"--nats-port {low}: the members' NATS ports {low}-{high} overlap their MQTT ports "
                    f"{mqtt.start}-{mqtt.stop - 1} (--cloud-listen)")
    return ""


def _bridge_problem(args: argparse.Namespace) -> str:
    """--bridge native with a broker that cannot carry it ("" when nothing); an unsaid --bridge becomes the edge
    broker's default (``stack.default_bridge``)."""
    try:
        args.bridge = stack.resolve_bridge(args.bridge, args.edge_broker)
    except stack.StackError as exc:
        return str(exc)
    return ""


def _nats_port(args: argparse.Namespace) -> int:
    return 4222 if args.nats_port is None else int(args.nats_port)


def edge_main(args: argparse.Namespace) -> int:
    logs.setup("edgehive-edge", "info")
    if args.device_listen and not args.device_users:
        print("edgehive edge: --device-listen needs --device-users (create it with edgehive passwd)", file=sys.stderr)
        return 2
    problem = _bridge_problem(args)
    if problem:
        print(f"edgehive edge: {problem}", file=sys.stderr)
        return 2
    try:
        device_args: tuple[str, ...] = ()
        if args.device_listen:
            device_args = ("--device-listen", args.device_listen, "--device-password-file", str(args.device_users))
            if args.device_tls_cert:
                device_args += ("--device-tls-cert", str(args.device_tls_cert), "--device-tls-key",
                                str(args.device_tls_key))
        children, watches = stack.build_joined_edge(args.state_dir, args.edge_listen, device_args, args.edge_broker,
                                                    args.bridge)
    except (FileNotFoundError, ValueError) as exc:  # ValueError: edge.yaml's link cannot be written for mosquitto
        print(f"edgehive edge: {exc}", file=sys.stderr)
        return 1
    threading.Thread(target=_keep_identity_fresh, args=(EdgeIdentity(args.state_dir),), name="renewal",
                     daemon=True).start()
    return _supervise(children, watches, args.state_dir,
                      f"edgehive edge: the node joined in {args.state_dir}; its broker mqtt://{args.edge_listen}",
                      args.edge_start)


def _keep_identity_fresh(identity: EdgeIdentity, every_s: float = 3600.0) -> None:
    """Renew the node's certificate when a third of its life is left; a failure is retried an hour later."""
    while True:
        try:
            if renew_if_due(identity):
                log.info("renewed the node's certificate; connections use it from their next connect")
        except (JoinError, OSError) as exc:
            log.warning("could not renew the node's certificate (%s); retrying in %.0f s", exc, every_s)
        time.sleep(every_s)


def add_up_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument("--cloud-listen", type=Address.parse, default=Address("127.0.0.1", 1883), metavar="HOST:PORT")
    up.add_argument("--edge-listen", type=Address.parse, default=Address("127.0.0.1", 1884), metavar="HOST:PORT")
    up.add_argument("--node", default="edge-1", help="name of the local edge node (default edge-1)")
    up.add_argument("--kubeconfig", type=Path,
                    help="use this cluster instead of starting a local control plane (etcd, kube-apiserver, "
                         "kube-controller-manager, kube-scheduler)")
    up.add_argument("--apiserver-port", type=int, default=6443, help="local API server port (default 6443)")
    up.add_argument("--etcd-port", type=int, default=2379, help="local etcd client port; peer is the next one")
    up.add_argument("--controller-manager-port", type=int, default=10257,
                    help="local kube-controller-manager's secure port, on loopback (default 10257)")
    up.add_argument("--scheduler-port", type=int, default=10259,
                    help="local kube-scheduler's secure port, on loopback (default 10259)")
    up.add_argument("--stream-port", type=int, default=10350,
                    help="the cloud stream server's port on loopback, every edge node's kubelet port: the API "
                         "server's way to kubectl logs (default 10350)")
    up.add_argument("--router-listen", type=Address.parse, metavar="HOST:PORT",
                    help="the router's HTTP door for rest-to-eventbus Rules (KubeEdge's is 0.0.0.0:9443; default: "
                         "none, the router then carries eventbus-to-rest Rules only)")
    up.add_argument("--stream-address", type=Address.parse, metavar="HOST:PORT",
                    help="with --kubeconfig: run the stream server (kubectl logs of edge pods) on PORT and advertise "
                         "HOST:PORT as every edge node's kubelet; your API server must reach it there")
    up.add_argument("--stream-serving-ca", type=Path, metavar="CA.crt",
                    help="issue its certificate from this CA: the one your API server's "
                         "--kubelet-certificate-authority names (default: the cluster's edgehive CA)")
    up.add_argument("--stream-serving-ca-key", type=Path, metavar="CA.key")
    up.add_argument("--stream-client-cn", default="", metavar="CN[,CN]",
                    help="the CN of your API server's kubelet client certificate (default "
                         "kube-apiserver-kubelet-client; k3s: system:apiserver)")
    up.add_argument("--broker", choices=BROKERS, default="amqtt",
                    help="the cloud broker: amqtt (one process, the default) or nats (a cluster of --replicas "
                         "members on loopback: MQTT on the --cloud-listen port and the next ones)")
    up.add_argument("--replicas", type=int, default=1,
                    help="with --broker nats: CloudHub replicas and NATS members (default 1)")
    up.add_argument("--nats-port", type=int, default=None,
                    help="with --broker nats: the first member's NATS client port; its route port is the next, and "
                         "each further member two up (default 4222)")
    # DeviceController checks the value again; the CLI names the choices so that a typo fails here, not in a child.
    up.add_argument("--status-object", choices=("device", "devicestatus"), default="device",
                    help="where DeviceController writes device reports: the Device's status (default: what kubectl "
                         "get device and clients before KubeEdge 1.23 read) or a DeviceStatus object per Device")
    _add_edge_broker(up)
    _add_edge_start(up)
    up.add_argument("--state-dir", type=Path, default=default_state_dir(),
                    help="credentials, logs and status.json (default $XDG_STATE_HOME/edgehive)")
    up.set_defaults(func=up_main)


def _add_edge_broker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--edge-broker", choices=stack.EDGE_BROKERS, default=stack.DEFAULT_EDGE_BROKER,
                        help="the node's broker: mosquitto (the default: a C broker, 3 MB on an idle node) or amqtt "
                             "(the embedded broker, forked with the components: 13 MB); the same rules on either")
    parser.add_argument("--bridge", choices=stack.BRIDGES, default=None,
                        help="what carries the node's link to the cloud: native (the edge mosquitto's own bridge: no "
                             "process, about 9 MB less; the default with --edge-broker mosquitto) or python (the "
                             "bridge process, broker/bridge.py; the default with --edge-broker amqtt)")


def add_edge_arguments(edge: argparse.ArgumentParser) -> None:
    edge.add_argument("--state-dir", type=Path, default=Path("edgehive-edge"), help="what edgehive join wrote")
    edge.add_argument("--edge-listen", type=Address.parse, default=Address("127.0.0.1", 1884), metavar="HOST:PORT",
                      help="the node's broker, for its components and devices (default loopback 1884)")
    edge.add_argument("--device-listen", metavar="HOST:PORT",
                      help="also accept devices on other hosts here: users from --device-users, $hw/events/ only")
    edge.add_argument("--device-users", type=Path, help="device users (edgehive passwd FILE USER)")
    edge.add_argument("--device-tls-cert", type=Path, help="TLS for --device-listen")
    edge.add_argument("--device-tls-key", type=Path)
    _add_edge_broker(edge)
    _add_edge_start(edge)
    edge.set_defaults(func=edge_main)


def _add_edge_start(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--edge-start", choices=("fork", "exec"), default="fork",
                        help="how the edge node's Python components start: fork (default: from one parent that "
                             "imported what they share, so they share that memory) or exec (each its own "
                             "interpreter, as python -m starts it)")
