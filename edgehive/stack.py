"""The local stack that ``edgehive up`` runs: a Kubernetes control plane (unless given a cluster), a cloud
broker, the cloud components, one edge node, and the link between them.

It keeps its state (credentials, logs, status) in one directory, so a second
``edgehive up`` finds the same users and passwords. Later components join by
adding a Child here.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from broker.passwords import read_password_file, set_password
from edgehive.launcher import Child, python_module
from edgehive.localcluster import LocalApiServer
from runtime.address import Address
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import EnvelopeError, Op, decode
from schemas.fields import BodyError

log = logging.getLogger(__name__)

CLOUD_USER = "cloud"


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


@dataclass
class Credentials:
    """Passwords of the stack's broker users, kept next to the password file (mode 600)."""

    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def ensure(cls, state_dir: Path, users: list[str]) -> tuple[Credentials, Path]:
        state_dir.mkdir(parents=True, exist_ok=True)
        secrets_file = state_dir / "credentials"
        passwd = state_dir / "passwd"
        creds = cls()
        if secrets_file.exists():
            for line in secrets_file.read_text().splitlines():
                user, _, password = line.partition(":")
                if user and password:
                    creds.passwords[user] = password
        known = read_password_file(passwd) if passwd.exists() else {}
        for user in users:
            if user not in creds.passwords or user not in known:
                creds.passwords[user] = secrets.token_urlsafe(18)
                set_password(passwd, user, creds.passwords[user])
        secrets_file.touch(mode=0o600)
        secrets_file.write_text("".join(f"{u}:{p}\n" for u, p in creds.passwords.items()))
        return creds, passwd


class StatusWatch:
    """Reads the retained link states and component statuses on one broker; its own connection
    doubles as that broker's health."""

    def __init__(self, url: BrokerUrl, client_id: str, name: str) -> None:
        self.links: dict[str, bool] = {}
        self.components: dict[str, bool] = {}
        self.connection = Connection(ConnectionSettings(url=url, client_id=client_id), name=name)
        self.connection.subscribe(f"{topics.LINK}/+/state")
        self.connection.subscribe(topics.all_status())
        self.connection.on_message(self._on_message)

    def _on_message(self, incoming: Incoming) -> None:
        incoming.ack()
        parsed = incoming.topic.split("/")
        try:
            envelope = decode(incoming.payload)
        except EnvelopeError:
            return
        if parsed[1] == "link":
            self.links[parsed[2]] = envelope.op == Op.CONNECTED
        else:
            try:
                self.components[parsed[2]] = ComponentStatus.parse(envelope.body).up
            except BodyError:
                return

    def link_up(self, node: str) -> bool:
        return self.links.get(node, False)

    def component_up(self, name: str) -> bool:
        return self.components.get(name, False)


def build(settings: StackSettings) -> tuple[list[Child], list[Connection]]:
    """The children to supervise, and the watch connections their health checks read."""
    creds, passwd = Credentials.ensure(settings.state_dir, [CLOUD_USER, settings.node])
    cloud_url = BrokerUrl(settings.cloud_listen.host, settings.cloud_listen.port, username=CLOUD_USER,
                          password=creds.passwords[CLOUD_USER])
    edge_url = BrokerUrl(settings.edge_listen.host, settings.edge_listen.port)
    # Passwords go by environment, not argv, so that ps does not show them.
    cloud_env = {"EDGEHIVE_BROKER": str(cloud_url.with_password())}

    cloud_watch = StatusWatch(cloud_url, "edgehive-up-watch", "up-watch-cloud")
    edge_watch = StatusWatch(edge_url, "edgehive-up-watch", "up-watch-edge")
    children: list[Child] = []
    kubeconfig = settings.kubeconfig
    if kubeconfig is None:
        local = LocalApiServer(settings.state_dir / "apiserver", port=settings.apiserver_port,
                               etcd_port=settings.etcd_port, etcd_peer_port=settings.etcd_port + 1,
                               control_plane=True, controller_manager_port=settings.controller_manager_port,
                               scheduler_port=settings.scheduler_port)
        local.prepare()
        kubeconfig = local.kubeconfig
        # The controller-manager exits when the API server does not answer within 10 s of its start; the
        # supervisor starts it again, so no ordering is needed here.
        children += [Child("etcd", local.etcd_argv()),
                     Child("kube-apiserver", local.apiserver_argv(), healthy=local.ready),
                     Child("kube-controller-manager", local.controller_manager_argv(),
                           healthy=local.controller_manager_healthy),
                     Child("kube-scheduler", local.scheduler_argv(), healthy=local.scheduler_healthy)]
    children += [
        Child("cloud-broker",
              python_module("broker", "--listen", str(settings.cloud_listen), "--password-file", str(passwd)),
              healthy=lambda: cloud_watch.connection.connected),
        Child("cloudhub", python_module("cloud.cloudhub"), env=cloud_env,
              healthy=lambda: cloud_watch.component_up("cloudhub")),
        Child("edgecontroller", python_module("cloud.edgecontroller", "--kubeconfig", str(kubeconfig)), env=cloud_env,
              healthy=lambda: cloud_watch.component_up("edgecontroller")),
        Child("devicecontroller", python_module("cloud.devicecontroller", "--kubeconfig", str(kubeconfig)),
              env=cloud_env, healthy=lambda: cloud_watch.component_up("devicecontroller")),
    ]
    if settings.kubeconfig is None:
        # The autonomy webhook (edge pods are not evicted while their node is offline), on a port of the system's
        # choosing that it registers itself; only for the stack's own API server, which calls it on this host.
        children.append(Child("admission", python_module("cloud.admission", "--kubeconfig", str(kubeconfig),
                                                          "--listen", "127.0.0.1:0"), env=cloud_env,
                              healthy=lambda: cloud_watch.component_up("admission")))
    bridge_env = {"EDGEHIVE_CLOUD": f"mqtt://{settings.node}:{creds.passwords[settings.node]}@{settings.cloud_listen}"}
    children += edge_children(settings.node, settings.state_dir, settings.edge_listen, edge_watch, (), bridge_env)
    log.info("stack state in %s; kubeconfig %s; cloud broker password in %s", settings.state_dir, kubeconfig,
             settings.state_dir / "credentials")
    return children, [cloud_watch.connection, edge_watch.connection]


def edge_children(node: str, state_dir: Path, edge_listen: Address, edge_watch: StatusWatch,
                  bridge_args: tuple[str, ...], bridge_env: dict[str, str],
                  broker_args: tuple[str, ...] = ()) -> list[Child]:
    """One edge node's processes: its broker, the bridge to the cloud, podman's API and the five components."""
    data = state_dir / "data"
    podman_socket = state_dir / "podman.sock"
    podman_socket.unlink(missing_ok=True)  # a stale one would look healthy before podman listens
    edge_common = ("--node", node, "--broker", f"mqtt://{edge_listen}")
    return [
        Child("edge-broker", python_module("broker", "--listen", str(edge_listen), *broker_args),
              healthy=lambda: edge_watch.connection.connected),
        Child(f"bridge-{node}",
              python_module("broker.bridge", "--node", node, "--edge", f"mqtt://{edge_listen}", *bridge_args),
              env=bridge_env, healthy=lambda: edge_watch.link_up(node)),
        Child("edgehub", python_module("edge.edgehub", *edge_common, "--outbox", str(data / "outbox.db")),
              healthy=lambda: edge_watch.component_up("edgehub")),
        Child("metamanager", python_module("edge.metamanager", *edge_common, "--db", str(data / "metamanager.db")),
              healthy=lambda: edge_watch.component_up("metamanager")),
        # The host's podman, on a socket of the stack's own; pods run as the machine's containers.
        Child("podman", ["podman", "system", "service", "--time=0", f"unix://{podman_socket}"],
              healthy=podman_socket.exists),
        Child("edged", python_module("edge.edged", *edge_common, "--podman-url", f"unix://{podman_socket}",
                                     "--data-dir", str(data / "edged")),
              healthy=lambda: edge_watch.component_up("edged")),
        Child("devicetwin", python_module("edge.devicetwin", *edge_common, "--db", str(data / "devicetwin.db")),
              healthy=lambda: edge_watch.component_up("devicetwin")),
        Child("eventbus", python_module("edge.eventbus", *edge_common),
              healthy=lambda: edge_watch.component_up("eventbus")),
    ]


def build_joined_edge(state_dir: Path, edge_listen: Address,
                      broker_args: tuple[str, ...] = ()) -> tuple[list[Child], list[Connection]]:
    """The processes of a node that ``edgehive join`` set up in ``state_dir``: its bridge uses edge.yaml.

    ``broker_args`` go to the node's broker (a device listener for devices on other hosts)."""
    config = state_dir / "edge.yaml"
    if not config.exists():
        raise FileNotFoundError(f"{config} is missing: run edgehive join first")
    node = next((line.split(":", 1)[1].strip() for line in config.read_text().splitlines()
                 if line.startswith("node:")), "")
    edge_watch = StatusWatch(BrokerUrl(edge_listen.host, edge_listen.port), "edgehive-edge-watch", "edge-watch")
    children = edge_children(node, state_dir, edge_listen, edge_watch, ("--config", str(config)), {}, broker_args)
    return children, [edge_watch.connection]
