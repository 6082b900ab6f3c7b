"""``edgehive up --broker nats --replicas N``: the cloud broker as N NATS members on loopback, and N CloudHub
replicas on them, for developing what a large fleet runs (README, "Large fleets").

Member i (from 0) serves MQTT on the cloud port + i, NATS clients on the NATS port + 2i and routes on the NATS
port + 2i + 1, each with its JetStream store under the state directory; the route secret is made once and kept
there (mode 600), so a second ``edgehive up`` finds the same cluster. Every client of the cloud broker (the
cloud components, the node's bridge) gets the member list as one URL and moves to the next member when its own
dies.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from edgehive.launcher import Child
from runtime.address import Address
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl

BROKERS = ("amqtt", "nats")
"""What ``edgehive up --broker`` runs: amqtt (the embedded broker, one process) or a NATS cluster."""


@dataclass(frozen=True)
class NatsLayout:
    """Where the members listen: the first member's MQTT address and NATS client port, then one up for each."""

    mqtt: Address
    nats_port: int
    members: int

    def mqtt_address(self, i: int) -> Address:
        return Address(self.mqtt.host, self.mqtt.port + i)

    def client_address(self, i: int) -> Address:
        return Address(self.mqtt.host, self.nats_port + 2 * i)

    def route_address(self, i: int) -> Address:
        return Address(self.mqtt.host, self.nats_port + 2 * i + 1)

    def hosts(self) -> str:
        return ",".join(str(self.mqtt_address(i)) for i in range(self.members))

    def url(self, user: str, password: str) -> str:
        """Every member as one URL with ``user``'s credentials, the form clients and bridges take."""
        return f"mqtt://{quote(user, safe='')}:{quote(password, safe='')}@{self.hosts()}"


def route_secret(state_dir: Path) -> Path:
    """The cluster's route secret, made on first use (the members refuse a cluster without one)."""
    path = state_dir / "nats" / "route-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path


def member_children(layout: NatsLayout, state_dir: Path, password_file: Path, cloud_user: str,
                    probe_password: str) -> tuple[list[Child], list[Connection]]:
    """One child per member, each healthy while an MQTT client of its own is connected to it (a member serves
    MQTT only once JetStream has a quorum, so health here means the cluster works)."""
    secret = route_secret(state_dir) if layout.members > 1 else None
    children: list[Child] = []
    probes: list[Connection] = []
    for i in range(layout.members):
        name = f"nats-{i + 1}"
        settings = BrokerSettings(
            listen=(str(layout.mqtt_address(i)),), cloud_users=(cloud_user,), password_file=str(password_file),
            nats_name=name, nats_client_listen=str(layout.client_address(i)),
            nats_cluster=str(layout.route_address(i)) if secret else None,
            nats_route_secret_file=str(secret) if secret else None,
            nats_routes=tuple(str(layout.route_address(j)) for j in range(layout.members) if secret and j != i))
        member_dir = state_dir / "nats" / name
        member_dir.mkdir(parents=True, exist_ok=True)
        address = layout.mqtt_address(i)
        # A client id of its own per member: NATS keeps one MQTT session per id across the whole cluster.
        probe = Connection(ConnectionSettings(url=BrokerUrl(address.host, address.port, username=cloud_user,
                                                            password=probe_password),
                                              client_id=f"edgehive-up-probe-{name}"), name=f"up-probe-{name}")
        children.append(Child(name, broker_argv("nats", settings, member_dir),
                              healthy=_connected(probe)))
        probes.append(probe)
    return children, probes


def _connected(connection: Connection) -> Callable[[], bool]:
    return lambda: connection.connected
