"""The node's link to the cloud done by the edge mosquitto itself (``--bridge native``, the default on a mosquitto
node): its ``connection`` sections.

The Python bridge (broker/bridge.py) is a process of its own, about 11 MB of a node's 78 MB; mosquitto's bridge is
two more client contexts inside the edge broker. The sections carry the same topics with the same client ids, so
switching modes keeps the node's cloud session and ACL identity:

- ``edgehive-<node>``: the down topic in (QoS ``down_qos``; 0 on NATS), the up topic out, a persistent session.
  Its notification topic is the node's ``link_hello`` on both brokers (schemas/topics.py): on the cloud broker a
  retained ``1`` at connect and the will, a retained ``0``, which tells CloudHub the link is gone; on the edge broker
  the link's state, which EdgeHub reads. EdgeHub's hello repeat (``hello_repeat``) is remapped out onto the cloud's
  hello topic.
- ``edgehive-<node>-stream``: the stream topics on a connection of their own, without a session, so a burst of
  stream frames never queues ahead of resources (the Python bridge's reason too; its resource-first gating is lost).

What is weaker than the Python bridge: mosquitto acknowledges a message once it holds it in memory, so a killed
edge broker loses its bridge queue; the protocol's resends cover it (EdgeHub's outbox keeps each entry until
CloudHub answers it, CloudHub's per-node queue each object until MetaManager answers it). Stream frames lose the
resource-first gating and the lower CPU priority; the ``edgehive_bridge_*`` metrics have no native source (EdgeHub's
``edgehive_link_up`` and its ``link_drops``/``link_connects`` events say what the node sees of its link).

No paho here: the embedded broker's ``--mosquitto-config`` and the stack write configurations in processes that must
not load it (tests/unit/test_broker_process_imports.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.errors import BrokerError
from runtime.connsettings import TlsSettings
from runtime.qos import check_qos
from runtime.url import BrokerUrl, describe
from schemas import topics
from schemas.names import require_node_name

KEEPALIVE_S = 10
"""As the Python bridge's cloud keepalive: the cloud broker publishes the will after 15 s of silence."""
SYSTEM_CA_PATH = "/etc/ssl/certs"
"""Where the system's CAs are, for an ``mqtts://`` cloud without a CA file (mosquitto needs a file or a path)."""


class NativeBridgeError(BrokerError, ValueError):
    """The link cannot be written as mosquitto bridge sections (the message names what)."""


def _check_qos(value: object) -> int:
    try:
        return check_qos("down_qos", value)
    except ValueError as exc:
        raise NativeBridgeError(str(exc)) from None


def _conf_value(name: str, value: str) -> str:
    """mosquitto reads a value to the end of its line and trims it: a newline or edge blank would change it."""
    if not value or "\n" in value or "\r" in value or value != value.strip():
        raise NativeBridgeError(f"the cloud broker's {name} cannot be written into mosquitto.conf as it is")
    return value


def bridge_sections(node: str, cloud: Sequence[BrokerUrl], tls: TlsSettings | None = None, down_qos: int = 1,
                    keepalive: int = KEEPALIVE_S) -> list[str]:
    """mosquitto.conf lines for ``node``'s link to ``cloud`` (a cluster's members, or one broker).

    ``tls``: the CA and client certificate of an ``mqtts://`` cloud (a joined node's pki/). Credentials in the URL
    become ``remote_username``/``remote_password``: the configuration then holds a secret (``holds_secret``)."""
    require_node_name(node)
    _check_qos(down_qos)
    if not cloud:
        raise NativeBridgeError("the native bridge needs the cloud broker's address")
    first = cloud[0]
    if any((url.tls, url.username, url.password) != (first.tls, first.username, first.password) for url in cloud):
        raise NativeBridgeError(f"the cloud broker's members differ in scheme or credentials: {describe(cloud)}")
    tls = tls or TlsSettings()
    if not first.tls and (tls.ca_file or tls.cert_file or tls.key_file):
        raise NativeBridgeError(f"TLS files are given for a plain mqtt:// cloud broker {describe(cloud)}")
    if bool(tls.cert_file) != bool(tls.key_file):
        raise NativeBridgeError("the cloud client certificate and key go together: give both or neither")
    if keepalive < 5:
        raise NativeBridgeError(f"keepalive must be at least 5 s (mosquitto's least), not {keepalive}")
    address = " ".join(f"{url.host}:{url.port}" for url in cloud)
    security: list[str] = []
    if first.tls:
        security.append(f"bridge_cafile {_conf_value('CA file', tls.ca_file)}" if tls.ca_file
                        else f"bridge_capath {SYSTEM_CA_PATH}")
        if tls.cert_file and tls.key_file:
            security += [f"bridge_certfile {_conf_value('certificate file', tls.cert_file)}",
                         f"bridge_keyfile {_conf_value('key file', tls.key_file)}"]
    if first.username:
        security.append(f"remote_username {_conf_value('user name', first.username)}")
        if first.password:
            security.append(f"remote_password {_conf_value('password', first.password)}")
    common = [
        f"address {address}",
        "round_robin true",
    ]
    tuning = [
        "bridge_protocol_version mqttv311",  # as paho and NATS; with try_private amqtt and NATS refuse the CONNECT
        "try_private false",
        "bridge_attempt_unsubscribe false",
    ]
    client_id = f"edgehive-bridge-{node}"
    main = [
        f"# --- edgehive: node {node}'s link to the cloud (--bridge native) ---",
        f"connection edgehive-{node}",
        *common,
        f"remote_clientid {client_id}",
        f"local_clientid {client_id}-local",
        *tuning,
        "cleansession false",
        f"keepalive_interval {keepalive}",
        "restart_timeout 1 5",
        "start_type automatic",
        "notifications true",
        f"notification_topic {topics.link_hello(node)}",
        *security,
        f"topic {topics.link_down(node)} in {down_qos}",
        f"topic {topics.link_up(node)} out 1",
        f'topic "" out 1 {topics.hello_repeat()} {topics.link_hello(node)}',
    ]
    stream = [
        "",
        f"connection edgehive-{node}-stream",
        *common,
        f"remote_clientid {client_id}-stream",
        f"local_clientid {client_id}-stream-local",
        *tuning,
        "cleansession true",
        f"keepalive_interval {keepalive}",
        "restart_timeout 1 5",
        "notifications false",
        *security,
        f"topic {topics.stream(node, topics.Direction.DOWN)} in 1",
        f"topic {topics.stream(node, topics.Direction.UP)} out 1",
    ]
    return main + stream


def holds_secret(lines: Sequence[str]) -> bool:
    """Whether bridge lines carry a password (then mosquitto.conf is written mode 0600)."""
    return any(line.startswith("remote_password ") for line in lines)
