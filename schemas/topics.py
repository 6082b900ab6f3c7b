"""Every MQTT topic edgehive uses, built here and nowhere else.

The link topics are fixed by ARCHITECTURE.md because broker ACLs depend on them.
Every function validates the names it puts into a topic, so a bad node name can
never turn into a wildcard or another node's topic.
"""

from __future__ import annotations

import functools
from enum import StrEnum

from schemas.names import is_module_name, is_namespace, is_object_name, require_module_name, require_node_name

ROOT = "edgehive"
LINK = f"{ROOT}/link"


class Side(StrEnum):
    CLOUD = "cloud"
    EDGE = "edge"


class Direction(StrEnum):
    DOWN = "down"
    UP = "up"


def link(node: str, direction: Direction) -> str:
    return f"{LINK}/{require_node_name(node)}/{direction.value}"


def link_down(node: str) -> str:
    """Cloud to edge: CloudHub publishes on the cloud broker; the bridge carries it to the edge broker."""
    return link(node, Direction.DOWN)


def link_up(node: str) -> str:
    """Edge to cloud: EdgeHub publishes on the edge broker; the bridge carries it to the cloud broker."""
    return link(node, Direction.UP)


def link_state(node: str) -> str:
    """Retained on the edge broker by the bridge: whether the cloud link is up."""
    return f"{LINK}/{require_node_name(node)}/state"


NATIVE_UP = b"1"
"""What a native (mosquitto) bridge publishes, retained, on ``link_hello`` when its connection comes up."""
NATIVE_DOWN = b"0"
"""A native bridge's will on ``link_hello`` (retained; the cloud broker publishes it when the bridge's connection
dies without a DISCONNECT): the node's link is lost."""


def link_hello(node: str) -> str:
    """Cloud broker, retained: the node's bridge says it is on the link, each time it connects. CloudHub replicas
    subscribe to the node's up topic only once they know the node; this is how they learn of one that has no
    Node object yet (its first registration), including one that connected before they started.

    What it carries depends on the bridge: the Python bridge (broker/bridge.py) puts a ``link_state`` envelope
    (connected) here and its will on ``link_up``; a native mosquitto bridge (``notification_topic``) puts
    ``NATIVE_UP`` here at each connect and has ``NATIVE_DOWN`` as its will, on this same topic. Every CloudHub
    reads it: any non-empty payload makes a node known to the replicas, and ``NATIVE_DOWN`` ends the node's
    session as the Python bridge's will does. The native bridge's mosquitto keeps the same topic on the edge
    broker too (``NATIVE_DOWN`` at its start and when the link drops, ``NATIVE_UP`` at each connect), which EdgeHub
    reads as the link's state with ``--bridge native`` (broker/nativebridge.py)."""
    return f"{LINK}/{require_node_name(node)}/hello"


def hello_repeat() -> str:
    """On the edge broker, retained: EdgeHub's repeat of the native bridge's hello, which the bridge carries out
    as the node's ``link_hello`` (a remapped topic). mosquitto says ``1`` once per connect; a NATS cluster spreads
    retained messages among its members asynchronously, so a replica may miss that one (broker/bridge.py,
    HELLO_REPEAT_S)."""
    return f"{ROOT}/{Side.EDGE.value}/link-hello"


def all_link_hellos() -> str:
    return f"{LINK}/+/hello"


def parse_hello(topic: str) -> str | None:
    """The node of a hello topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != LINK or parts[3] != "hello":
        return None
    try:
        return require_node_name(parts[2])
    except ValueError:
        return None


def all_links(direction: Direction) -> str:
    """The filter CloudHub subscribes to, for every node's up (or down) topic."""
    return f"{LINK}/+/{direction.value}"


def parse_link(topic: str) -> tuple[str, Direction] | None:
    """``(node, direction)`` for a link topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != LINK:
        return None
    try:
        return require_node_name(parts[2]), Direction(parts[3])
    except ValueError:
        return None


def inbox(side: Side, module: str) -> str:
    """A module's own topic on its side's broker, where requests and replies for it arrive."""
    return f"{ROOT}/{side.value}/{require_module_name(module)}"


def from_cloud(module: str) -> str:
    """On the edge broker: where EdgeHub delivers what the cloud sent to ``module``."""
    return f"{inbox(Side.EDGE, module)}/from-cloud"


def to_cloud() -> str:
    """On the edge broker: what modules send to the cloud; EdgeHub takes it from here (outbox or direct)."""
    return f"{ROOT}/{Side.EDGE.value}/to-cloud"


def cloud_link() -> str:
    """On the edge broker, retained: EdgeHub's ``connected``/``disconnected`` envelope for every module."""
    return f"{ROOT}/{Side.EDGE.value}/cloud-link"


def from_edge(module: str) -> str:
    """On the cloud broker: where CloudHub delivers what edge nodes sent to ``module``."""
    return f"{inbox(Side.CLOUD, module)}/from-edge"


def replica_module(module: str, replica: str) -> str:
    """The name one replica of a controller sharded by node (EdgeController's) answers to, ``<module>-<replica>``:
    its own ``from_edge`` topic, where CloudHub sends the messages of the nodes it owns, and its own inbox, where
    the answers to its queries come back (CloudHub sends an answer to the inbox of the query's ``src``). Raises
    ValueError when the two do not make a module name (too long, or a bad replica)."""
    return require_module_name(f"{require_module_name(module)}-{require_module_name(replica)}")


def node_session(node: str) -> str:
    """On the cloud broker, retained: CloudHub's ``connected``/``disconnected`` envelope for one node."""
    return f"{ROOT}/{Side.CLOUD.value}/nodes/{require_node_name(node)}/session"


def all_node_sessions() -> str:
    return f"{ROOT}/{Side.CLOUD.value}/nodes/+/session"


def status(component: str, replica: str | None = None) -> str:
    """Retained health of one component process on the broker it uses; of one of several replicas of a
    component that run at once (CloudHub's), a topic of its own under the component's, so that one replica's
    status, or its will, never overwrites another's."""
    base = f"{ROOT}/status/{require_module_name(component)}"
    return base if replica is None else f"{base}/{require_module_name(replica)}"


def all_status() -> str:
    """Every component's status and every replica's."""
    return f"{ROOT}/status/#"


def parse_status(topic: str) -> tuple[str, str | None] | None:
    """``(component, replica or None)`` for a status topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) not in (3, 4) or parts[:2] != [ROOT, "status"] or not all(map(is_module_name, parts[2:])):
        return None
    return parts[2], parts[3] if len(parts) == 4 else None


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest), for routing after a shared subscription."""
    filter_parts = topic_filter.split("/")
    topic_parts = topic.split("/")
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False  # MQTT: wildcards at the first level never match $-topics
    for i, part in enumerate(filter_parts):
        if part == "#":
            return True
        if i >= len(topic_parts) or (part != "+" and part != topic_parts[i]):
            return False
    return len(filter_parts) == len(topic_parts)


# -- KubeEdge's device topics (v1.17+, namespaced), on the edge broker --------------------------

HW_EVENTS = "$hw/events"
DEVICE_REQUESTS = ("twin/update", "twin/get", "state/update")
"""What devices publish; each is answered on the same topic with ``/result`` (and, for updates, more)."""


@functools.lru_cache(maxsize=4096)
def is_device(namespace: str, name: str) -> bool:
    """Whether these are a device's namespace and name. Kept once answered: EventBus and DeviceTwin ask for the
    same few devices several times per update (a topic read, a request checked, two or three topics made), and
    the two patterns were most of each of those."""
    return is_namespace(namespace) and is_object_name(name)


def device(namespace: str, name: str, suffix: str) -> str:
    """``$hw/events/device/<ns>/<name>/<suffix>``, e.g. suffix ``twin/update/delta``."""
    if not is_device(namespace, name):
        raise ValueError(f"{namespace}/{name} is not a valid device (namespace and DNS-1123 name)")
    return f"{HW_EVENTS}/device/{namespace}/{name}/{suffix}"


def device_requests() -> list[str]:
    """The filters EventBus subscribes to for what devices send."""
    return [f"{HW_EVENTS}/device/+/+/{suffix}" for suffix in DEVICE_REQUESTS]


def parse_device(topic: str) -> tuple[str, str, str] | None:
    """``(namespace, name, suffix)`` of a device topic; None when the topic is not one (or names are invalid)."""
    prefix = f"{HW_EVENTS}/device/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/", 2)
    if len(parts) != 3 or not is_device(parts[0], parts[1]):
        return None
    return parts[0], parts[1], parts[2]


def membership(node: str, suffix: str) -> str:
    """``$hw/events/node/<node>/membership/<suffix>``: ``get``, ``get/result`` or ``updated``."""
    return f"{HW_EVENTS}/node/{require_node_name(node)}/membership/{suffix}"


def topic_class(topic: str) -> str:
    """A topic's kind, for metrics: link, from-cloud, to-cloud, from-edge, cloud-link, session, status, inbox,
    device, membership, or other (a bounded set, so that a label never grows with node or device names)."""
    parts = topic.split("/")
    if topic.startswith(HW_EVENTS + "/"):
        return "membership" if parts[2] == "node" else "device"
    if parts[0] != ROOT or len(parts) < 2:
        return "other"
    if parts[1] == "link":
        return "link"
    if parts[1] == "status":
        return "status"
    last = parts[-1]
    if last in ("from-cloud", "to-cloud", "from-edge", "cloud-link", "session"):
        return last
    return "inbox" if len(parts) == 3 else "other"


# -- streams (kubelet requests tunnelled to a node: logs, exec, port-forward), under the node's link ----------


def stream(node: str, direction: Direction) -> str:
    """``edgehive/link/<node>/stream/<down|up>``: a node's stream frames, under its link prefix so that the link
    ACL and the bridge cover them, apart from its resource traffic (no outbox, no ordering with it)."""
    return f"{LINK}/{require_node_name(node)}/stream/{direction.value}"


def all_streams(direction: Direction) -> str:
    """The filter the cloud stream server subscribes to for every node's stream frames."""
    return f"{LINK}/+/stream/{direction.value}"


def parse_stream(topic: str) -> tuple[str, Direction] | None:
    """``(node, direction)`` for a stream topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != LINK or parts[3] != "stream":
        return None
    try:
        return require_node_name(parts[2]), Direction(parts[4])
    except ValueError:
        return None
