"""One NATS cluster member's configuration with the embedded broker's rules: the cloud broker for fleets.

NATS serves MQTT 3.1.1 on JetStream (sessions, retained messages and QoS 1 in
flight live in replicated streams), so any member can take any node's link when
another dies. We run 2.15 (the ``nats`` extra; broker/launch.py's NATS_MINIMUM
says why not Debian's 2.9). What differs from the mosquitto writer, and why:

- NATS has no per-user topic patterns (mosquitto's ``%u``), so every node is a
  user of its own with its link subjects spelled out: from the password file's
  users, or with client certificates from ``--nats-nodes``.
- Permissions are on NATS subjects: an MQTT topic maps ``/`` to ``.``, ``+`` to
  ``*`` and ``#`` to ``>``. A QoS 1 subscription is fed by a JetStream consumer
  whose delivery subject is ``$MQTT.sub.<id>``; up to 2.12.2 NATS checks the
  client's permission on it, so nodes may subscribe to ``$MQTT.sub.>`` (later
  releases allow it to MQTT clients themselves; an MQTT client cannot reach it as
  a topic: NATS refuses topics that start with ``$MQTT``).
- Node users may connect over MQTT only (``allowed_connection_types``): over the
  NATS protocol, ``$MQTT.sub.>`` would show them every session's deliveries.
- Passwords are bcrypt hashes, the only hash NATS checks; our mosquitto-format
  lines are refused with the command that writes the right ones.
- A client certificate maps to the user named by its subject (``CN=<node>``;
  ``verify_and_map``). NATS reads no CRL (2.15 still has OCSP only): a node is
  revoked by removing it from ``--nats-nodes`` and reloading (``nats-server
  --signal reload``), which also cuts off its open connection. ``--crl-file`` is
  refused rather than ignored.
- One MQTT listener per member (NATS has one), and no device listener (the
  cloud broker has no devices).
- Members of a cluster authenticate each other's routes with a shared secret: a
  host that reached an open route port would join the cluster and see every
  node's traffic, so a cluster without ``--nats-route-secret-file`` is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from broker.acl import node_publishes, node_subscribes
from broker.embedded import BrokerSettings
from broker.errors import BrokerError
from broker.passwords import read_password_file
from runtime.address import Address
from schemas.names import is_node_name

CLUSTER_NAME = "edgehive"
MAX_PAYLOAD = 2 * 1024 * 1024
"""Twice our envelope limit (schemas.envelope): the MQTT header and NATS's QoS 1 headers ride on top of it."""
MAX_ACK_PENDING = 1024
"""QoS 1 messages NATS has delivered to one MQTT *session* and not yet had acknowledged (NATS's own default); also
each of the session's JetStream consumers' MaxAckPending.

The limit is per session, over all its subscriptions, and what passes it is not held back but skipped: NATS's MQTT
delivery (mqttDeliverMsgCbQos1, later mqttDeliverMsgCbQoS12; alike from 2.9 to 2.15) gives the message no packet
identifier, sends nothing, and leaves it to JetStream to deliver again after ``ACK_WAIT``, 30 s later, flagged
duplicate. What is in transit counts too: written to the socket and not yet read, or acknowledged and the PUBACK
not yet read back.

At 100 (this value until now) a CloudHub replica taking over a dead one's nodes passed it in every run traced
(edgehive bench scale --broker nats --replicas 3 --nodes 300, 2 runs): within half a second its session gets its own
session announcements back and, on its own inbox, the EdgeController replicas' store listings (each up to 32
resyncs of 5 kinds at once); 74-76 of the 455 first listing queries reached it 30.0-30.4 s late, so about 20 of
the 91 nodes waited out a 3 s listing timeout (failover_s 14.2-14.4). At 1000: all 455 answered at once,
failover_s 9.9 (one run).

The other limit: NATS refuses (SUBACK 0x80) a subscription that would take the sum of its session's consumers'
MaxAckPending past 65,535, so a session holds at most 63 QoS 1 subscriptions at this value. Ours hold a few (a
component's inboxes, the session announcements, the statuses); a CloudHub replica subscribing to each node's up
topic at QoS 1 could serve only 63 nodes, one reason replicas subscribe there at QoS 0 (CloudHub's --up-qos).
Lower is worse in another way too: a consumer whose pending fill its MaxAckPending delivers nothing meanwhile; at
32, deliveries lost with a dead member stalled the link for over 15 s (tests/integration/test_nats_failover.py
failed; it passes at 100)."""
ACK_WAIT = "30s"
"""How long a QoS 1 delivery waits for its PUBACK before NATS sends it again (NATS's default, set explicitly so
that an upgrade that changes it does not change our delivery silently).

NATS redelivers after this wait, as a duplicate and out of order with what was delivered since (mosquitto
resends only on reconnect). Shorter would redeliver to live clients whose acknowledgements lag under a burst
(each client acknowledges after its handler has taken the message); longer would delay what a client or
member that died had in flight, for which there is no other resend. Redelivery is harmless to the state:
MetaManager refuses what is older than it holds or deleted (edge/metamanager/objectstore.py), and the cloud's
queue settles by message id."""
JS_API_TIMEOUT = "2s"
"""How long NATS's MQTT layer waits for each of its JetStream requests (NATS's default 5 s; a setting since
2.11.3). A client's CONNECT reads its session record from the sessions stream, and when the member leading that
stream dies no request is answered until the others elect a leader, 4 to 9 s later (NATS's Raft; not a setting);
a request sent meanwhile is never answered, so a connecting client waits the whole timeout, is refused, and
tries again. Its link is back at the first attempt after the election: at 5 s, after two attempts, 11.5 s after
the member died (``bench scale --broker nats``, which kills the leader of that stream), past the 10 s goal. A
shorter wait also refuses slow answers under load; those cost a retry (a CONNECT, a SUBSCRIBE: the connection
asks again; a QoS 1 publish: its connection closes and our delivery resends), never data."""
MQTT_INTERNAL_SUBSCRIBE = "$MQTT.sub.>"
"""The delivery subjects of the JetStream consumers behind QoS 1 subscriptions."""
ROUTE_USER = "edgehive-route"
_ROUTE_SECRET = re.compile(r"[A-Za-z0-9_-]{32,}")  # it goes into route URLs unquoted


class NatsConfigError(BrokerError, ValueError):
    """Settings the NATS writer cannot honour; the message says what to change."""


def mqtt_subject(topic_filter: str) -> str:
    """The NATS subject (or wildcard) an MQTT topic filter becomes in NATS's MQTT layer."""
    levels = topic_filter.split("/")
    if any(not level for level in levels):
        raise NatsConfigError(f"{topic_filter!r}: empty topic levels have no NATS subject of ours")
    mapped = []
    for level in levels:
        if any(c in level for c in ".*> \t"):
            raise NatsConfigError(f"{topic_filter!r}: '.', '*', '>' and spaces are NATS subject syntax")
        mapped.append({"+": "*", "#": ">"}.get(level, level))
    return ".".join(mapped)


def _node_user(user: str, node: str, password: str | None) -> dict[str, Any]:
    if "." in node:
        # The node's subject would gain levels, and its permission would cover a different topic tree.
        raise NatsConfigError(f"node {node!r}: NATS subjects cannot hold a node name with '.'")
    entry: dict[str, Any] = {"user": user}
    if password is not None:
        entry["password"] = password
    entry["permissions"] = {
        "publish": {"allow": [mqtt_subject(t) for t in node_publishes(node)]},
        "subscribe": {"allow": [*(mqtt_subject(t) for t in node_subscribes(node)), MQTT_INTERNAL_SUBSCRIBE]},
    }
    entry["allowed_connection_types"] = ["MQTT"]
    return entry


def _cloud_user(user: str, password: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"user": user}
    if password is not None:
        entry["password"] = password
    entry["permissions"] = {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    return entry


def _users(settings: BrokerSettings) -> list[dict[str, Any]]:
    if settings.client_certs:
        # verify_and_map: the user is the certificate's subject, which our CA writes as CN=<name> only.
        users = [_cloud_user(f"CN={u}", None) for u in settings.cloud_users]
        return users + [_node_user(f"CN={n}", n, None) for n in _nodes(settings.nats_nodes, settings.cloud_users)]
    assert settings.password_file is not None
    stored = read_password_file(Path(settings.password_file))
    not_bcrypt = sorted(u for u, h in stored.items() if not h.startswith("$2"))
    if not_bcrypt:
        raise NatsConfigError(
            f"{settings.password_file}: NATS checks bcrypt hashes only; set the passwords of "
            f"{', '.join(not_bcrypt)} again with: edgehive passwd --bcrypt {settings.password_file} USER")
    users = [_cloud_user(u, stored[u]) for u in settings.cloud_users if u in stored]
    others = [u for u in stored if u not in settings.cloud_users]
    return users + [_node_user(n, n, stored[n]) for n in _nodes(tuple(others), settings.cloud_users)]


def _nodes(names: tuple[str, ...], cloud_users: tuple[str, ...]) -> list[str]:
    bad = [n for n in names if not is_node_name(n) or n in cloud_users]
    if bad:
        raise NatsConfigError(f"not node names (DNS-1123 subdomains, not a cloud user): {', '.join(bad)}")
    return sorted(set(names))


def _check(settings: BrokerSettings) -> None:
    if len(settings.listen) != 1:
        raise NatsConfigError("a NATS member has one MQTT listener: give exactly one --listen")
    if settings.device_listen:
        raise NatsConfigError("--device-listen is for edge brokers; NATS is the cloud broker here")
    if settings.crl_file:
        raise NatsConfigError("NATS reads no CRL: revoke a node by removing it from --nats-nodes "
                              "and reloading (nats-server --signal reload)")
    if settings.client_certs and not settings.nats_nodes:
        raise NatsConfigError("--client-certs on NATS needs --nats-nodes: NATS has no per-user patterns")
    if settings.nats_routes and not settings.nats_cluster:
        raise NatsConfigError("--nats-routes needs --nats-cluster (where this member accepts routes)")
    if settings.nats_cluster and not settings.nats_route_secret_file:
        raise NatsConfigError("--nats-cluster needs --nats-route-secret-file: an open route port lets any host "
                              "join the cluster and read every node's traffic")
    for address in (*settings.nats_routes, settings.nats_client_listen, *filter(None, [settings.nats_cluster])):
        Address.parse(address)


def _route_secret(settings: BrokerSettings) -> str:
    assert settings.nats_route_secret_file is not None
    path = Path(settings.nats_route_secret_file)
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise NatsConfigError(f"cannot read the route secret: {exc}") from exc
    if not _ROUTE_SECRET.fullmatch(secret):
        raise NatsConfigError(f"{path}: the route secret must be at least 32 characters of A-Z a-z 0-9 _ - "
                              "(make one with: openssl rand -hex 32)")
    return secret


def nats_conf(settings: BrokerSettings, directory: Path) -> dict[str, Any]:
    """The configuration as a mapping; NATS's configuration parser reads it as JSON."""
    _check(settings)
    client = Address.parse(settings.nats_client_listen)
    mqtt_address = settings.addresses[0]
    mqtt: dict[str, Any] = {"listen": str(mqtt_address), "max_ack_pending": MAX_ACK_PENDING, "ack_wait": ACK_WAIT,
                            "js_api_timeout": JS_API_TIMEOUT}
    if settings.tls_cert:
        tls: dict[str, Any] = {"cert_file": settings.tls_cert, "key_file": settings.tls_key}
        if settings.client_certs:
            tls.update(ca_file=settings.tls_ca, verify_and_map=True)
        elif settings.tls_ca:
            tls["ca_file"] = settings.tls_ca
        mqtt["tls"] = tls
    conf: dict[str, Any] = {
        "server_name": settings.nats_name,
        "listen": str(client),
        "max_payload": MAX_PAYLOAD,
        "jetstream": {"store_dir": str(directory / "data")},
        "mqtt": mqtt,
    }
    if settings.password_file or settings.client_certs:
        conf["authorization"] = {"users": _users(settings)}
    # Without users it is an open development broker, as mosquitto's and amqtt's are then.
    if settings.nats_cluster:
        members = 1 + len(settings.nats_routes)
        secret = _route_secret(settings)
        conf["cluster"] = {
            "name": CLUSTER_NAME,
            "listen": str(Address.parse(settings.nats_cluster)),
            "authorization": {"user": ROUTE_USER, "password": secret},
            "routes": [f"nats-route://{ROUTE_USER}:{secret}@{Address.parse(r)}" for r in settings.nats_routes],
        }
        # Sessions, retained messages and QoS 1 state survive the loss of one member (R3; R1 on two members).
        mqtt["stream_replicas"] = 3 if members >= 3 else 1
    return conf


def write_config(settings: BrokerSettings, directory: Path) -> Path:
    """Write nats.conf into ``directory`` (and its JetStream store under data/); returns the path of nats.conf."""
    conf = nats_conf(settings, directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    path = directory / "nats.conf"
    tmp = path.with_name("nats.conf.tmp")
    tmp.write_text("# Written by 'edgehive broker --nats-config'; reload with: nats-server --signal reload\n"
                   + json.dumps(conf, indent=2) + "\n")
    tmp.chmod(0o600)  # password hashes
    tmp.replace(path)
    return path
