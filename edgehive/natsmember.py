"""``edgehive run broker --kind nats``: one member of the cloud broker's NATS cluster in a container.

The configuration is the one ``edgehive broker --nats-config`` writes (broker/nats.py), made at each start from
flags and the environment, as the mosquitto broker's is, so a compose file needs no configuration files: the
users from ``$EDGEHIVE_BROKER_USERS`` (stored as bcrypt hashes, the only ones NATS checks), the route secret
from ``$EDGEHIVE_NATS_ROUTE_SECRET`` (written to a file only this user reads), the other members' route
addresses by name (``--nats-routes cloud-broker-2:6222``; NATS resolves them again at each reconnect, so a
member that comes back on a new address is found).

Healthy while an MQTT client of its own is connected to the member: a member serves MQTT only once JetStream
has a quorum, so a healthy member is one whose cluster works (an open port alone says nothing of that).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from broker.embedded import BrokerSettings
from broker.launch import nats_binary
from broker.nats import NatsConfigError, write_config
from edgehive.services import supervise
from runtime.connection import Connection, ConnectionSettings
from runtime.healthfile import HealthFile
from runtime.url import BrokerUrl

log = logging.getLogger("edgehive.services")

ROUTE_SECRET_ENV = "EDGEHIVE_NATS_ROUTE_SECRET"


def route_secret_file(directory: Path) -> Path | None:
    """The route secret from the environment, in a file private to this user (nats.conf is written from it)."""
    secret = os.environ.get(ROUTE_SECRET_ENV, "").strip()
    if not secret:
        return None
    path = directory / "route-secret"
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return path


def health_probe(settings: BrokerSettings, users: dict[str, str]) -> Connection:
    """An MQTT connection of the member's own, as the first cloud user (or anonymous on an open broker)."""
    address = settings.addresses[0]
    user = next((u for u in settings.cloud_users if u in users), None)
    url = BrokerUrl("127.0.0.1", address.port, username=user, password=users[user] if user else None)
    # A client id per member: NATS keeps one MQTT session per id across the whole cluster.
    return Connection(ConnectionSettings(url=url, client_id=f"edgehive-health-{settings.nats_name}"),
                      name=f"health-{settings.nats_name}")


def run_member(settings: BrokerSettings, users: dict[str, str], directory: Path) -> int:
    """Write the member's nats.conf under ``directory`` and run nats-server until a stop signal or its death."""
    try:
        conf = write_config(settings, directory / "nats")
    except NatsConfigError as exc:
        print(f"edgehive run broker: {exc}", file=sys.stderr)
        return 2
    log.info("NATS member %s: MQTT on %s, routes %s", settings.nats_name, settings.listen[0],
             ", ".join(settings.nats_routes) or "none (a cluster of one)")
    child = subprocess.Popen([nats_binary(), "-c", str(conf)])
    probe = health_probe(settings, users)
    probe.start()

    def state() -> tuple[str, dict[str, Any]]:
        if probe.connected:
            return "up", {"member": settings.nats_name}
        return "down", {"reason": f"no MQTT session on {settings.nats_name} (JetStream without a quorum?)"}

    try:
        return supervise("broker", [child], HealthFile.from_env("broker", state))
    finally:
        probe.close(drain_timeout=0)
