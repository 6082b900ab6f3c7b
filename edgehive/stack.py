"""The local stack that ``edgehive up`` runs: a Kubernetes control plane (unless given a cluster), a cloud
broker, the cloud components, one edge node, and the link between them.

It keeps its state (credentials, logs, status) in one directory, so a second
``edgehive up`` finds the same users and passwords. Later components join by
adding a Child here.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from broker.bridgesettings import BridgeProcessSettings
from broker.cli import add_broker_arguments
from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from broker.nativebridge import bridge_sections
from broker.passwords import read_password_file, set_password
from edgehive.errors import EdgehiveError
from edgehive.launcher import Child, python_module
from edgehive.localcluster import STREAM_CERT, STREAM_KEY, LocalApiServer
from edgehive.natsstack import NatsLayout, member_children
from edgehive.podmanprobe import podman_alive
from runtime.address import Address
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.settings import add_arguments
from runtime.settings import load as load_settings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import EnvelopeError, Op, decode
from schemas.fields import BodyError

log = logging.getLogger(__name__)

CLOUD_USER = "cloud"
EDGE_BROKERS = ("mosquitto", "amqtt")
"""The node's broker: mosquitto (the default), or amqtt, the embedded broker, forked beside the components. Both
take the same listener and device rules; on an idle node mosquitto takes 3 MB where amqtt takes 13 MB (``edgehive
bench footprint``), and it carries the node's traffic faster (``edgehive bench edge``, ``twin``)."""
DEFAULT_EDGE_BROKER = EDGE_BROKERS[0]
BRIDGES = ("native", "python")
"""What carries a node's link: the edge mosquitto's own bridge (broker/nativebridge.py: no process, about 9 MB less
on the node; mosquitto only) or the Python bridge (broker/bridge.py, a process of its own). Unsaid, the node's broker
chooses (``default_bridge``)."""


class StackError(EdgehiveError, ValueError):
    """An option the stack cannot honour (the message names it)."""


def default_bridge(edge_broker: str) -> str:
    """The link a node gets when ``--bridge`` is not said: mosquitto's own bridge on mosquitto (the default broker,
    and the smallest node), the Python bridge on amqtt, which has no bridge of its own."""
    return "native" if edge_broker == "mosquitto" else "python"


def resolve_bridge(bridge: str | None, edge_broker: str) -> str:
    """``bridge`` as said, or the node's broker's default when unsaid (None); refused by name if it cannot be."""
    chosen = default_bridge(edge_broker) if bridge is None else bridge
    check_bridge(chosen, edge_broker)
    return chosen


def check_bridge(bridge: str, edge_broker: str) -> None:
    """Refuse a link the node's broker cannot carry, by name."""
    if bridge not in BRIDGES:
        raise StackError(f"--bridge {bridge} is not one of {', '.join(BRIDGES)}")
    if bridge == "native" and edge_broker != "mosquitto":
        raise StackError(f"--bridge native is mosquitto's own bridge: it needs --edge-broker mosquitto, "
                         f"not --edge-broker {edge_broker}")


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path
    cloud_listen: Address = field(default_factory=lambda: Address("127.0.0.1", 1883))
    edge_listen: Address = field(default_factory=lambda: Address("127.0.0.1", 1884))
    node: str = "edge-1"
    kubeconfig: Path | None = None  # the user's cluster; None runs the local API server
    apiserver_port: int = 6443
    etcd_port: int = 2379
    controller_manager_port: int = 10257  # the secure ports Kubernetes gives them by default
    scheduler_port: int = 10259
    stream_port: int = 10350  # the cloud stream server's, every edge node's kubelet port (KubeEdge's 10350)
    router_listen: Address | None = None  # the router's HTTP door (rest-to-eventbus Rules); None: no door
    # On a user's cluster (``kubeconfig``): where its API server reaches the stream server, which then runs here;
    # None runs none (kubectl logs of edge pods then fail). The rest as cloud/stream/servingtls.py takes them.
    stream_address: Address | None = None
    stream_serving_ca: tuple[Path, Path] | None = None
    stream_client_cn: str = ""
    broker: str = "amqtt"  # or "nats": a cluster of ``replicas`` members (edgehive/natsstack.py)
    replicas: int = 1  # CloudHub replicas, and NATS members
    nats_port: int = 4222  # the first NATS member's client port; its route port is the next, and so on
    status_object: str = "device"  # where DeviceController writes device reports: device or devicestatus
    edge_broker: str = DEFAULT_EDGE_BROKER  # the node's broker (EDGE_BROKERS)
    bridge: str | None = None  # what carries the node's link (BRIDGES); None: the edge broker's (default_bridge)


@dataclass
class Credentials:
    """Passwords of the stack's broker users, kept next to the password file (mode 600)."""

    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def ensure(cls, state_dir: Path, users: list[str], *, use_bcrypt: bool = False) -> tuple[Credentials, Path]:
        """``use_bcrypt``: the password file NATS reads (passwd-bcrypt), with the same passwords as the other."""
        state_dir.mkdir(parents=True, exist_ok=True)
        secrets_file = state_dir / "credentials"
        passwd = state_dir / ("passwd-bcrypt" if use_bcrypt else "passwd")
        creds = cls()
        if secrets_file.exists():
            for line in secrets_file.read_text().splitlines():
                user, _, password = line.partition(":")
                if user and password:
                    creds.passwords[user] = password
        known = read_password_file(passwd) if passwd.exists() else {}
        for user in users:
            if user not in creds.passwords:
                creds.passwords[user] = secrets.token_urlsafe(18)
                set_password(passwd, user, creds.passwords[user], use_bcrypt=use_bcrypt)
            elif user not in known:  # the other password file has it: the same password, so both stay valid
                set_password(passwd, user, creds.passwords[user], use_bcrypt=use_bcrypt)
        secrets_file.touch(mode=0o600)
        secrets_file.write_text("".join(f"{u}:{p}\n" for u, p in creds.passwords.items()))
        return creds, passwd


class StatusWatch:
    """Reads the retained link states and component statuses on one broker; its own connection
    doubles as that broker's health."""

    def __init__(self, url: BrokerUrl, client_id: str, name: str, alternates: tuple[BrokerUrl, ...] = (), *,
                 native_links: bool = False) -> None:
        """``native_links``: the links are also read from mosquitto's raw ``1``/``0`` on the hello topics (an edge
        broker whose own bridge carries the link, ``--bridge native``)."""
        self.links: dict[str, bool] = {}
        self.components: dict[str, bool] = {}
        self.replicas: dict[tuple[str, str], bool] = {}
        """By (component, replica): each replica's status, on its own topic."""
        self.connection = Connection(ConnectionSettings(url=url, client_id=client_id, alternates=alternates),
                                     name=name)
        self.connection.subscribe(f"{topics.LINK}/+/state")
        if native_links:
            self.connection.subscribe(topics.all_link_hellos())
        self.connection.subscribe(topics.all_status())
        self.connection.on_message(self._on_message)

    def _on_message(self, incoming: Incoming) -> None:
        incoming.ack()
        parsed = incoming.topic.split("/")
        hello = topics.parse_hello(incoming.topic)
        if hello is not None:
            self.links[hello] = incoming.payload == topics.NATIVE_UP
            return
        try:
            envelope = decode(incoming.payload)
        except EnvelopeError:
            return
        if parsed[1] == "link":
            self.links[parsed[2]] = envelope.op == Op.CONNECTED
            return
        status = topics.parse_status(incoming.topic)
        try:
            up = ComponentStatus.parse(envelope.body).up
        except BodyError:
            return
        if status is not None and status[1] is None:
            self.components[status[0]] = up
        elif status is not None and status[1] is not None:
            self.replicas[(status[0], status[1])] = up

    def link_up(self, node: str) -> bool:
        return self.links.get(node, False)

    def component_up(self, name: str) -> bool:
        return self.components.get(name, False)

    def replica_up(self, name: str, replica: str) -> bool:
        """One replica's status, from its own topic."""
        return self.replicas.get((name, replica), False)


def build(settings: StackSettings) -> tuple[list[Child], list[Connection]]:
    """The children to supervise, and the watch connections their health checks read."""
    nats = settings.broker == "nats"
    creds, passwd = Credentials.ensure(settings.state_dir, [CLOUD_USER, settings.node], use_bcrypt=nats)
    layout = NatsLayout(settings.cloud_listen, settings.nats_port, settings.replicas)
    cloud_list = layout.url(CLOUD_USER, creds.passwords[CLOUD_USER]) if nats else ""
    cloud_urls = BrokerUrl.parse_list(cloud_list) if nats else (
        BrokerUrl(settings.cloud_listen.host, settings.cloud_listen.port, username=CLOUD_USER,
                  password=creds.passwords[CLOUD_USER]),)
    edge_url = BrokerUrl(settings.edge_listen.host, settings.edge_listen.port)
    # Passwords go by environment, not argv, so that ps does not show them.
    cloud_env = {"EDGEHIVE_BROKER": cloud_list or cloud_urls[0].with_password()}

    cloud_watch = StatusWatch(cloud_urls[0], "edgehive-up-watch", "up-watch-cloud", cloud_urls[1:])
    bridge = resolve_bridge(settings.bridge, settings.edge_broker)
    edge_watch = StatusWatch(edge_url, "edgehive-up-watch", "up-watch-edge", native_links=bridge == "native")
    children: list[Child] = []
    watches = [cloud_watch.connection, edge_watch.connection]
    kubeconfig = settings.kubeconfig
    local: LocalApiServer | None = None
    stream_args: tuple[str, ...] = ()
    if kubeconfig is None:
        local = LocalApiServer(settings.state_dir / "apiserver", port=settings.apiserver_port,
                               etcd_port=settings.etcd_port, etcd_peer_port=settings.etcd_port + 1,
                               control_plane=True, controller_manager_port=settings.controller_manager_port,
                               scheduler_port=settings.scheduler_port)
        local.prepare()
        kubeconfig = local.kubeconfig
        stream_args = ("--stream-address", f"127.0.0.1:{settings.stream_port}")
        # The controller-manager exits when the API server does not answer within 10 s of its start; the
        # supervisor starts it again, so no ordering is needed here.
        children += [Child("etcd", local.etcd_argv()),
                     Child("kube-apiserver", local.apiserver_argv(), healthy=local.ready),
                     Child("kube-controller-manager", local.controller_manager_argv(),
                           healthy=local.controller_manager_healthy),
                     Child("kube-scheduler", local.scheduler_argv(), healthy=local.scheduler_healthy)]
    elif settings.stream_address is not None:
        stream_args = ("--stream-address", str(settings.stream_address))
    if nats:
        members, probes = member_children(layout, settings.state_dir, passwd, CLOUD_USER, creds.passwords[CLOUD_USER])
        children += members
        watches += probes
    else:
        children.append(Child(
            "cloud-broker",
            python_module("broker", "--listen", str(settings.cloud_listen), "--password-file", str(passwd)),
            healthy=lambda: cloud_watch.connection.connected))
    children += cloudhub_children(settings.replicas, kubeconfig, cloud_env, cloud_watch, nats=nats)
    # On NATS the controllers answer the nodes at QoS 0, as CloudHub passes the nodes' messages on to them
    # (cloudhub_children): the node's outbox sends again what is not answered.
    answers = ("--answer-qos", "0") if nats else ()
    children += [
        *edgecontroller_children(settings.replicas, ("--kubeconfig", str(kubeconfig), *stream_args, *answers),
                                 cloud_env, cloud_watch),
        *controller_children("devicecontroller", settings.replicas,
                             ("--kubeconfig", str(kubeconfig), "--status-object", settings.status_object, *answers),
                             cloud_env, cloud_watch),
        # Always: the nodes' uploads go to it, and stay in their outboxes until it acknowledges them.
        *controller_children("router", settings.replicas, ("--kubeconfig", str(kubeconfig), "--listen",
                                                           str(settings.router_listen or "")), cloud_env, cloud_watch),
    ]
    if local is not None:
        children.append(stream_server_child(local, settings.stream_port, cloud_env, cloud_watch))
        children.append(metrics_api_child(local, cloud_env, cloud_watch))
    elif settings.stream_address is not None:
        children.append(cluster_stream_server_child(settings, kubeconfig, cloud_env, cloud_watch))
    if settings.kubeconfig is None:
        # The autonomy webhook (edge pods are not evicted while their node is offline), on a port of the system's
        # choosing that it registers itself; only for the stack's own API server, which calls it on this host.
        children.append(Child("admission", python_module("cloud.admission", "--kubeconfig", str(kubeconfig),
                                                          "--listen", "127.0.0.1:0"), env=cloud_env,
                              healthy=lambda: cloud_watch.component_up("admission")))
    bridge_env = {"EDGEHIVE_CLOUD": layout.url(settings.node, creds.passwords[settings.node]) if nats
                  else f"mqtt://{settings.node}:{creds.passwords[settings.node]}@{settings.cloud_listen}"}
    # On NATS the bridge's down subscription is QoS 0: no JetStream consumer per node (broker/bridge.py says why).
    bridge_args = ("--down-qos", "0") if nats else ()
    bridge_lines = bridge_sections(settings.node, BrokerUrl.parse_list(bridge_env["EDGEHIVE_CLOUD"]),
                                   down_qos=0 if nats else 1) if bridge == "native" else []
    children += edge_children(settings.node, settings.state_dir, settings.edge_listen, edge_watch, bridge_args,
                              bridge_env, edge_broker=settings.edge_broker, bridge_lines=bridge_lines)
    log.info("stack state in %s; kubeconfig %s; cloud broker password in %s", settings.state_dir, kubeconfig,
             settings.state_dir / "credentials")
    return children, watches


def cloudhub_children(replicas: int, kubeconfig: Path, cloud_env: dict[str, str],
                      cloud_watch: StatusWatch, *, nats: bool = False) -> list[Child]:
    """The one CloudHub, or ``replicas`` of them sharing the fleet by Leases in the API server (each with its
    own identity, which also names its status topic: each replica's health is its own). On ``nats`` the cloud's
    own hops are QoS 0: down, since the bridges take their down topic at QoS 0 anyway (CloudHub's --down-qos
    says what it spares), and the nodes' messages passed on to the controllers (--forward-qos), since what is
    not answered stays in the node's outbox, which sends it again."""
    qos = ("--down-qos", "0", "--forward-qos", "0") if nats else ()
    if replicas == 1:
        return [Child("cloudhub", python_module("cloud.cloudhub", *qos), env=cloud_env,
                      healthy=lambda: cloud_watch.component_up("cloudhub"))]
    children = []
    for i in range(replicas):
        replica = f"cloudhub-{i + 1}"
        # Replicas run only on NATS (up_cli), where QoS 0 spares a JetStream consumer per node (see --up-qos).
        # --edgecontroller-shards: EdgeController runs as replicas too (edgecontroller_children), reached per node.
        children.append(Child(replica, python_module("cloud.cloudhub", "--replica-id", replica, "--up-qos", "0", *qos,
                                                     "--edgecontroller-shards", "--kubeconfig", str(kubeconfig)),
                              env=cloud_env, healthy=_replica_up(cloud_watch, "cloudhub", replica)))
    return children


def edgecontroller_children(replicas: int, args: tuple[str, ...], cloud_env: dict[str, str],
                            cloud_watch: StatusWatch) -> list[Child]:
    """The one EdgeController, or ``replicas`` active replicas sharing the nodes by Leases (cloud/edgecontroller/
    shard.py: its CPU is per node, so a fleet that outgrows one core needs them all working, not a standby), each
    with its own identity and status topic; the CloudHub replicas route each node's messages to its owner."""
    if replicas == 1:
        return controller_children("edgecontroller", 1, args, cloud_env, cloud_watch)
    return [Child(f"edgecontroller-{i + 1}", python_module("cloud.edgecontroller", *args, "--replica-id",
                                                           f"ec-{i + 1}"),
                  env=cloud_env, healthy=_replica_up(cloud_watch, "edgecontroller", f"ec-{i + 1}"))
            for i in range(replicas)]


def controller_children(module: str, replicas: int, args: tuple[str, ...], cloud_env: dict[str, str],
                        cloud_watch: StatusWatch) -> list[Child]:
    """The controller, or ``replicas`` candidates of it electing one leader on a Lease named after it (the others
    wait as standbys and publish no status, so each candidate is healthy while the component has an active one)."""
    if replicas == 1:
        return [Child(module, python_module(f"cloud.{module}", *args), env=cloud_env,
                      healthy=lambda: cloud_watch.component_up(module))]
    return [Child(f"{module}-{i + 1}", python_module(f"cloud.{module}", *args, "--leader-elect", module,
                                                     "--leader-identity", f"{module}-{i + 1}"),
                  env=cloud_env, healthy=lambda: cloud_watch.component_up(module)) for i in range(replicas)]


def _replica_up(watch: StatusWatch, component: str, replica: str) -> Callable[[], bool]:
    return lambda: watch.replica_up(component, replica)




def edge_broker_argv(kind: str, edge_listen: Address, broker_args: tuple[str, ...], directory: Path,
                     bridge_lines: Sequence[str] = ()) -> list[str]:
    """The node's broker's command line; ``broker_args`` are ``python -m broker``'s options (a device listener),
    read into the same settings for mosquitto, whose files go into ``directory``. ``bridge_lines``: the node's
    link as mosquitto's own bridge (``--bridge native``)."""
    argv = python_module("broker", "--listen", str(edge_listen), *broker_args)
    if bridge_lines:
        check_bridge("native", kind)
    if kind == "amqtt":
        return argv
    if kind != "mosquitto":
        raise ValueError(f"edge broker {kind!r} is not one of {', '.join(EDGE_BROKERS)}")
    parser = argparse.ArgumentParser(prog="edge broker")
    add_broker_arguments(parser)
    return broker_argv(kind, load_settings(BrokerSettings, parser.parse_args(argv[argv.index("broker") + 1:])),
                       directory, bridge_lines)


def edge_children(node: str, state_dir: Path, edge_listen: Address, edge_watch: StatusWatch,
                  bridge_args: tuple[str, ...], bridge_env: dict[str, str],
                  broker_args: tuple[str, ...] = (), edge_broker: str = DEFAULT_EDGE_BROKER,
                  bridge_lines: Sequence[str] = ()) -> list[Child]:
    """One edge node's processes: its broker, the bridge to the cloud, podman's API and the five components.

    With ``bridge_lines`` (``--bridge native``) the broker carries the link itself: no bridge process, the broker is
    healthy once its link is up (as the bridge was), and EdgeHub reads the link's state from mosquitto's topic."""
    native = bool(bridge_lines)
    data = state_dir / "data"
    podman_socket = state_dir / "podman.sock"
    podman_socket.unlink(missing_ok=True)  # a stale one would look healthy before podman listens
    edge_common = ("--node", node, "--broker", f"mqtt://{edge_listen}")
    broker = Child("edge-broker", edge_broker_argv(edge_broker, edge_listen, broker_args, state_dir / "edge-broker",
                                                   bridge_lines),
                   healthy=(lambda: edge_watch.connection.connected and edge_watch.link_up(node)) if native
                   else (lambda: edge_watch.connection.connected))
    bridge = [] if native else [Child(
        f"bridge-{node}",
        python_module("broker.bridge", "--node", node, "--edge", f"mqtt://{edge_listen}", *bridge_args),
        env=bridge_env, healthy=lambda: edge_watch.link_up(node))]
    children = [
        broker,
        *bridge,
        Child("edgehub", python_module("edge.edgehub", *edge_common, "--outbox", str(data / "outbox.db"),
                                       *(("--bridge", "native") if native else ())),
              healthy=lambda: edge_watch.component_up("edgehub")),
        Child("metamanager", python_module("edge.metamanager", *edge_common, "--db", str(data / "metamanager.db")),
              healthy=lambda: edge_watch.component_up("metamanager")),
        # The host's podman, on a socket of the stack's own; pods run as the machine's containers. Restarted
        # when it stops answering (edgehive/podmanprobe.py says why it can).
        Child("podman", ["podman", "system", "service", "--time=0", f"unix://{podman_socket}"],
              healthy=podman_socket.exists, alive=podman_alive(podman_socket, timeout_s=15.0), alive_every_s=10.0,
              alive_failures=3),
        Child("edged", python_module("edge.edged", *edge_common, "--podman-url", f"unix://{podman_socket}",
                                     "--data-dir", str(data / "edged")),
              healthy=lambda: edge_watch.component_up("edged")),
        Child("devicetwin", python_module("edge.devicetwin", *edge_common, "--db", str(data / "devicetwin.db")),
              healthy=lambda: edge_watch.component_up("devicetwin")),
        Child("eventbus", python_module("edge.eventbus", *edge_common),
              healthy=lambda: edge_watch.component_up("eventbus")),
        # Mappers register on this socket (KubeEdge's own default, /etc/kubeedge/dmi.sock, is root's to make).
        Child("dmi", python_module("edge.dmi", *edge_common, "--socket", str(state_dir / "dmi.sock"),
                                   "--mappers-file", str(data / "dmi-mappers.json")),
              healthy=lambda: edge_watch.component_up("dmi")),
        Child("edgestream", python_module("edge.stream", *edge_common, "--podman-url", f"unix://{podman_socket}"),
              healthy=lambda: edge_watch.component_up("stream")),
    ]
    for child in children:
        # The Python ones share one parent's imports (edgehive.forkserver); podman and mosquitto are programs.
        child.forked = child.argv[0] == python_module("edgehive")[0]
    return children


def stream_server_child(local: LocalApiServer, port: int, cloud_env: dict[str, str],
                        cloud_watch: StatusWatch) -> Child:
    """The cloud stream server (kubectl logs of edge pods) for the stack's own API server, with the certificates
    ``LocalApiServer.prepare`` made for both ends. On a user's cluster it is run by hand with the cluster's CA
    (README, "kubectl logs, exec and top of edge pods")."""
    pki = local.pki
    return Child("stream", python_module(
        "cloud.stream", "--kubeconfig", str(local.kubeconfig), "--listen", f"127.0.0.1:{port}",
        "--tls-cert", str(pki / STREAM_CERT), "--tls-key", str(pki / STREAM_KEY), "--client-ca", str(pki / "ca.crt")),
        env=cloud_env, healthy=lambda: cloud_watch.component_up("stream"))


def metrics_api_child(local: LocalApiServer, cloud_env: dict[str, str], cloud_watch: StatusWatch) -> Child:
    """The metrics API (kubectl top) for the stack's own API server, which has the aggregation flags it needs;
    on a port of the system's choosing, which it registers itself (its Endpoints name this host's address)."""
    return Child("metricsapi", python_module(
        "cloud.metricsapi", "--kubeconfig", str(local.kubeconfig), "--listen", "0.0.0.0:0",
        "--scrape-interval-s", "10"), env=cloud_env, healthy=lambda: cloud_watch.component_up("metricsapi"))


def cluster_stream_server_child(settings: StackSettings, kubeconfig: Path, cloud_env: dict[str, str],
                                cloud_watch: StatusWatch) -> Child:
    """The cloud stream server for a user's cluster, on the port of ``stream_address`` (on that address when it is
    one of this host's, else on all): its certificate issued at start for that name (from the given CA, else the
    cluster's edgehive CA), its client CA read from the API server (README, "kubectl logs, exec and top of edge
    pods", "Your cluster")."""
    address = settings.stream_address
    assert address is not None
    try:
        ipaddress.ip_address(address.host)
        listen = str(address)
    except ValueError:
        listen = f"0.0.0.0:{address.port}"
    args = ["--kubeconfig", str(kubeconfig), "--listen", listen, "--server-names", address.host]
    if settings.stream_serving_ca is not None:
        args += ["--serving-ca", str(settings.stream_serving_ca[0]), "--serving-ca-key",
                 str(settings.stream_serving_ca[1])]
    if settings.stream_client_cn:
        args += ["--client-cn", settings.stream_client_cn]
    return Child("stream", python_module("cloud.stream", *args), env=cloud_env,
                 healthy=lambda: cloud_watch.component_up("stream"))


def build_joined_edge(state_dir: Path, edge_listen: Address, broker_args: tuple[str, ...] = (),
                      edge_broker: str = DEFAULT_EDGE_BROKER,
                      bridge: str | None = None) -> tuple[list[Child], list[Connection]]:
    """The processes of a node that ``edgehive join`` set up in ``state_dir``: its link uses edge.yaml (the Python
    bridge reads it; for ``bridge="native"``, the default on mosquitto, the edge mosquitto's sections are written
    from it).

    ``broker_args`` go to the node's broker (a device listener for devices on other hosts)."""
    bridge = resolve_bridge(bridge, edge_broker)
    config = state_dir / "edge.yaml"
    if not config.exists():
        raise FileNotFoundError(f"{config} is missing: run edgehive join first")
    node = next((line.split(":", 1)[1].strip() for line in config.read_text().splitlines()
                 if line.startswith("node:")), "")
    bridge_lines: list[str] = []
    if bridge == "native":
        parser = argparse.ArgumentParser(prog="edge.yaml")
        add_arguments(parser, BridgeProcessSettings)
        joined = load_settings(BridgeProcessSettings, parser.parse_args(["--config", str(config)]))
        node = joined.node
        bridge_lines = bridge_sections(joined.node, joined.cloud_urls(), joined.cloud_tls(), joined.down_qos)
    edge_watch = StatusWatch(BrokerUrl(edge_listen.host, edge_listen.port), "edgehive-edge-watch", "edge-watch",
                             native_links=bridge == "native")
    children = edge_children(node, state_dir, edge_listen, edge_watch, ("--config", str(config)), {}, broker_args,
                             edge_broker, bridge_lines)
    return children, [edge_watch.connection]
