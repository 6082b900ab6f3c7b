"""CloudHub: the cloud end of every node's link, as a process.

The decisions (sessions, per-node queues, routing up and down) are in routing.py; this
module runs them: the bus's handler thread for what arrives, a sender thread that drains
the connected nodes' queues, and a session thread that ends the sessions of nodes gone
silent. All three call the router under one lock and publish outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from cloud.cloudhub.routing import MODULE as ROUTES_MODULE
from cloud.cloudhub.routing import ROUTES, CloudRouter, Due, Routed
from cloud.sessionnews import read_session_news
from runtime.bus import Bus
from runtime.component import ComponentSettings
from runtime.linger import Linger
from runtime.qos import check_qos
from schemas import topics
from schemas.batch import MAX_MEMBERS, MIN_BYTES, Packed
from schemas.envelope import Envelope, Group, Op, Send
from schemas.names import is_module_name

if TYPE_CHECKING:
    from cloud.cloudhub.replica import Handover, Membership
    from cloud.cloudhub.shardroutes import ShardRouteWatch

log = logging.getLogger(__name__)

EDGECONTROLLER = ROUTES[Group.RESOURCE]
"""The controller that may run sharded by node (``--edgecontroller-shards``)."""
SLOW_ANNOUNCEMENT_S = 2.0
"""An announcement published later than this after it was decided is logged (the controllers wait for it)."""



def is_down(topic: str) -> bool:
    """A node's down topic (what ``--down-qos`` applies to)."""
    parsed = topics.parse_link(topic)
    return parsed is not None and parsed[1] == topics.Direction.DOWN

@dataclass(frozen=True)
class CloudHubSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    keepalive_timeout_s: float = field(default=40.0, metadata={"help": "silence after which a node is gone"})
    window_per_node: int = field(default=100, metadata={"help": "unacknowledged objects in flight per node"})
    batch_max_members: int = field(default=100, metadata={
        "help": "most objects packed into one message down a node's link (1: one message per object). Only what "
                "is due at once is packed (see batch_linger_ms); only nodes that say they take "
                "batches get them"})
    batch_max_bytes: int = field(default=256 * 1024, metadata={
        "help": "largest batch down a node's link, bytes; lowered to max_envelope_size (a configuration that set "
                "a small one before batches existed keeps working) and to what the node says it takes. An object "
                "larger than this goes alone"})
    batch_linger_ms: int = field(default=0, metadata={
        "help": "while a node's objects keep coming, a pass of the sender follows the last one that sent "
                "anything by at least this long, so that what comes meanwhile goes in one batch rather than one "
                "message each; an object after a quiet spell goes at once. 0 (the default): the controllers "
                "already linger and send a node's objects to CloudHub in batches, which leave as they came, and a "
                "wait here would only slow a node whose window of unacknowledged objects is full"})
    replica_id: str = field(default="", metadata={
        "help": "run as one of several CloudHub replicas under this identity (a Lease in edgehive-system), "
                "serving only the nodes it owns; empty: the only CloudHub, serving every node"})
    lease_duration_s: int = field(default=10, metadata={
        "help": "a replica's Lease duration: a dead replica's nodes move after this long"})
    up_qos: int = field(default=1, metadata={
        "help": "QoS of the subscriptions to the nodes' up topics. 1 (the default) lets the broker keep what "
                "arrives while CloudHub is away. 0 suits NATS: each QoS 1 MQTT subscription there is a "
                "replicated JetStream consumer, created one after another (about 0.3 s each on 3 members), so a "
                "replica taking over hundreds of nodes waits minutes, and one session holds at most 63 of them "
                "(broker/nats.py MAX_ACK_PENDING); at 0 nothing is created, and what is lost while away is sent "
                "again by each node's outbox (EdgeHub's --resend-s) until CloudHub answers it"})
    down_qos: int = field(default=1, metadata={
        "help": "QoS of what CloudHub publishes on the nodes' down topics. 1 (the default): the broker acknowledges "
                "each message. 0 suits NATS, whose bridges subscribe to their down topic at QoS 0 (edgehive join "
                "writes down_qos 0 there), so they get every message at QoS 0 whatever it was published at, while "
                "NATS stores each QoS 1 publish in a replicated JetStream stream before it acknowledges it: 0.8 ms "
                "of the members' CPU and several ms of latency per message on 3 members, against 0.01 ms at QoS "
                "0 (measured), and a burst of them holds CloudHub's connection for seconds. Nothing rests on the "
                "broker's acknowledgement: each object is resent by the node's queue until MetaManager answers it, "
                "and a query until its asker has its answer"})
    forward_qos: int = field(default=1, metadata={
        "help": "QoS of what CloudHub passes on from the nodes to the cloud modules (their messages to the "
                "controllers, their answers to a module's query). 1 (the default): the broker acknowledges each. 0 "
                "suits NATS, where each QoS 1 publish to a QoS 1 subscriber is stored and acknowledged through a "
                "replicated JetStream consumer, and where the nodes' messages reach CloudHub at QoS 0 already "
                "(--up-qos 0): one lost is sent again by the node's outbox (EdgeHub's --resend-s) until its "
                "controller answers it, and a query is asked again by its asker"})
    edgecontroller_shards: bool = field(default=False, metadata={
        "help": "EdgeController runs as replicas sharded by node (its --replica-id): read their Leases and send "
                "each node's messages for it to its owner's own topic (cloud/replicas/routes.py), the shared topic "
                "while no replica is counted; off: everything to the shared topic, as for a lone EdgeController"})
    kubeconfig: str | None = field(default=None, metadata={
        "help": "kubeconfig file for replicas' Leases and Nodes (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={
        "help": "API server URL to use instead of the kubeconfig's (k3s writes https://127.0.0.1:6443)"})

    def __post_init__(self) -> None:
        # The broker client id is made of the node name: replicas left on the default would share one id, and
        # an MQTT broker keeps one connection per id, so each would cut the others off in turn.
        if self.replica_id and self.node == "cloud":
            object.__setattr__(self, "node", f"cloud-{self.replica_id}")
        super().__post_init__()
        if self.replica_id and not is_module_name(self.replica_id):  # it names a Lease and a status topic
            raise ValueError(f"replica_id {self.replica_id!r} must be a-z, 0-9 and '-', starting with a letter")
        if self.replica_id and not is_module_name(f"cloudhub-{self.replica_id}"):  # and its own inbox
            raise ValueError(f"replica_id {self.replica_id!r} is too long to name an inbox (cloudhub-ID, at most "
                             "63 characters)")
        for name in ("up_qos", "down_qos", "forward_qos"):
            check_qos(name, getattr(self, name))
        if not 1 <= self.batch_max_members <= MAX_MEMBERS:
            raise ValueError(f"batch_max_members must be 1 to {MAX_MEMBERS}, not {self.batch_max_members}")
        if self.batch_max_bytes < MIN_BYTES:
            raise ValueError(f"batch_max_bytes must be at least {MIN_BYTES}, not {self.batch_max_bytes}")
        if not 0 <= self.batch_linger_ms <= 1000:
            raise ValueError(f"batch_linger_ms must be 0 to 1000, not {self.batch_linger_ms}")
        if self.replica_id and self.lease_duration_s < 2:
            raise ValueError(f"lease_duration_s must be at least 2, not {self.lease_duration_s}")

    def replica(self) -> str | None:
        return self.replica_id or None


class CloudHub:
    def __init__(self, settings: CloudHubSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.router = CloudRouter(bus.counters, window_per_node=settings.window_per_node,
                                  keepalive_timeout_s=settings.keepalive_timeout_s,
                                  replica=settings.replica_id or None,
                                  batch_max_members=settings.batch_max_members,
                                  batch_max_bytes=min(settings.batch_max_bytes, settings.max_envelope_size),
                                  max_size=settings.max_envelope_size, forward_qos=settings.forward_qos)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send_loop, name="sender", daemon=True),
                         threading.Thread(target=self._session_loop, name="sessions", daemon=True)]
        self.membership: Membership | None = None
        self.own_inbox: str | None = None
        """A replica's own inbox: the controllers send here what is for the nodes whose sessions it announced
        (cloud/nodesync.py ``hub_inbox``), so that one replica decodes each message, not all of them."""
        self.routes: ShardRouteWatch | None = None
        if settings.replica_id or settings.edgecontroller_shards:  # a lone CloudHub stays as small as before
            from cloud.kube import Kube  # noqa: PLC0415 (the Kubernetes client only for replicas and shards)

            kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        if settings.replica_id:
            from cloud.cloudhub.replica import Membership  # noqa: PLC0415 (as above)

            self.router.owned = set()  # nothing until the Leases say which nodes are ours
            self.own_inbox = topics.inbox(topics.Side.CLOUD, topics.replica_module(ROUTES_MODULE,
                                                                                   settings.replica_id))
            membership = Membership(kube, settings.replica_id, settings.lease_duration_s, self.hand_over,
                                    on_broker=lambda: bus.connection.on_broker(settle_s=settings.lease_duration_s))
            bus.connection.on_connection_change(lambda _up: membership.wake())  # the renewal on leaving
            self.membership = membership
        if settings.edgecontroller_shards:
            from cloud.cloudhub.shardroutes import (  # noqa: PLC0415 (as above)
                READ_TIMEOUT_S,
                STALE_AFTER_S,
                ShardRouteWatch,
            )
            from cloud.replicas.leasewatch import LeaseWatch  # noqa: PLC0415 (as above)
            from cloud.replicas.routes import ReplicaRoutes  # noqa: PLC0415 (as above)

            routes = ReplicaRoutes(EDGECONTROLLER, stale_after_s=STALE_AFTER_S)
            self.router.up_routes[EDGECONTROLLER] = routes
            self.routes = ShardRouteWatch(LeaseWatch(kube, EDGECONTROLLER, read_timeout_s=READ_TIMEOUT_S), routes,
                                          self._lock)

    def start(self) -> None:
        # A replica subscribes per node (hand_over), under the one handler: NATS has no shared subscriptions.
        self.bus.handle(topics.all_links(topics.Direction.UP), self.on_up, qos=self.settings.up_qos,
                        subscribe=self.membership is None)
        # Every node's hello (topics.link_hello): a replica learns of the nodes that have no Node yet; every
        # CloudHub hears a native bridge's will there, its link lost (``on_hello``).
        self.bus.handle_raw(topics.all_link_hellos(), self.on_hello)
        if self.membership is not None:
            self.bus.connection.on_subscribed(self.on_subscribed)
        self.bus.handle(self.bus.inbox, self.on_module)
        if self.own_inbox is not None:
            self.bus.handle(self.own_inbox, self.on_own_inbox)
        if self.membership is not None:  # what the other replicas said of their nodes, for a takeover
            self.bus.handle(topics.all_node_sessions(), self.on_session_news)
        self.bus.on_session_lost(self.announce_all)
        for thread in self._threads:
            thread.start()
        if self.membership is not None:
            self.membership.start()
        if self.routes is not None:
            self.routes.start()

    def close(self) -> None:
        if self.routes is not None:
            self.routes.close()
        if self.membership is not None:
            self.membership.close()
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def on_up(self, envelope: Envelope, topic: str) -> Iterable[Send] | None:
        with self._lock:
            routed = self.router.from_node(envelope, topic, time.monotonic())
        return self._carry_out(routed)

    def on_hello(self, topic: str, payload: bytes) -> Iterable[Send] | None:
        """A node's bridge is on the link: a replica serves the node even before it has a Node object, as a lone
        CloudHub, which hears every node, would (its first registration creates the Node). An empty payload
        clears the retained hello: forget the node unless it has a Node.

        A native (mosquitto) bridge says ``1`` here when it connects, and its will is ``0`` on the same topic
        (topics.NATIVE_UP/NATIVE_DOWN): the node's link is lost, as the Python bridge's will on the up topic says.
        The node stays present for the membership, as a node whose Python bridge went away does (that bridge's
        hello is never cleared): its Node or its next hello decides, not the state of its link. On one mosquitto or
        amqtt the will comes before anything the node's next connection sends; on NATS the hello and up topics are
        separate consumers, so a late ``0`` can end a session just started: the next keepalive starts another
        (one extra resync of the node)."""
        node = topics.parse_hello(topic)
        if node is None:
            return None
        if self.membership is not None:
            self.membership.heard(node, present=bool(payload))
        if payload != topics.NATIVE_DOWN:
            return None
        with self._lock:
            routed = self.router.link_lost(node, time.monotonic())
        return self._carry_out(routed)

    def on_module(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        with self._lock:
            routed = self.router.from_module(envelope, time.monotonic())
        return self._carry_out(routed)

    def on_session_news(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """A node's session announcement (retained; ours or another replica's): routing.py ``heard_news``."""
        news = read_session_news(envelope, self.bus.counters)
        if news is None:
            return None
        with self._lock:
            self.router.heard_news(envelope.node, news)
        return None

    def on_own_inbox(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """As ``on_module``; what is not for a node of ours goes on to the shared inbox (routing.py says why)."""
        with self._lock:
            routed = self.router.from_module(envelope, time.monotonic(), forward=True)
        return self._carry_out(routed)

    def hand_over(self, handover: Handover) -> None:
        """Ownership moved: stop serving what was lost before unsubscribing; subscribe to what was gained, and
        take each gained node (a new session, announced: the controllers resynchronise it) only when the broker
        confirms the subscription (``on_subscribed``), so that the resync's answers are heard."""
        with self._lock:
            for node in handover.lost:
                self.router.drop(node)
            for node in handover.gained:
                self.router.gain(node)
        # Asked for a hundred to a packet (runtime/connection.py SUBSCRIBE_PACK): a takeover of hundreds of nodes
        # would otherwise hold the connection for a packet per node.
        self.bus.connection.unsubscribe_many([topics.link_up(node) for node in handover.lost])
        self.bus.connection.subscribe_many([(topics.link_up(node), self.settings.up_qos)
                                            for node in sorted(handover.gained)])

    def on_subscribed(self, topic_filter: str) -> None:
        """The broker's SUBACK (network thread: only the lock and a queued publish here)."""
        with self._lock:
            routed = self.router.subscribed(topic_filter, time.monotonic())
        self._carry_out(routed)

    def announce_all(self) -> None:
        """The cloud broker lost its store, and the retained session announcements with it."""
        with self._lock:
            routed = self.router.announce_all()
        self._carry_out(routed)
        log.info("announced %d node sessions again", len(routed.announce))

    def _carry_out(self, routed: Routed) -> list[Send]:
        """Announcements go through the handler thread's queue, so that they are published in the order they
        were decided whichever thread decided them: the last retained one must be the node's real state."""
        for send in routed.announce:
            self.bus.call_soon(partial(self._announce, send, time.monotonic()))
        if routed.wake:
            self._wake.set()
        if self.settings.down_qos == 1:
            return routed.sends
        return [replace(send, qos=self.settings.down_qos) if is_down(send.topic) else send for send in routed.sends]

    def _announce(self, send: Send, decided: float) -> None:
        """Publish one session announcement (on the handler thread, in order). One that reaches the broker late
        delays the controllers' resync of its node (they start it on the announcement), so a slow one says so:
        how long it waited for the handler thread, and how long the broker took to take it."""
        started = time.monotonic()
        if not self.bus.publish(send.topic, send.envelope, retain=True, qos=send.qos):
            self.bus.publish(send.topic, send.envelope, retain=True)  # no connection: in the window, at QoS 1
        done = time.monotonic()
        if done - decided > SLOW_ANNOUNCEMENT_S:
            log.warning("the announcement on %s went out %.1f s after it was decided (%.1f s queued, %.1f s "
                        "publishing)", send.topic, done - decided, started - decided, done - started)

    def _send_loop(self) -> None:
        linger = Linger(self.settings.batch_linger_ms / 1000)
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            hold = linger.hold(time.monotonic())
            if hold > 0 and self._stop.wait(hold):  # what comes meanwhile goes in the same pass
                break
            self._wake.clear()
            with self._lock:
                work = self.router.due_packing(time.monotonic())
            if work:
                linger.sent(time.monotonic())
            for due in work:
                for item in self._packed(due):
                    if not self._publish(due.node, item):
                        break
                    with self._lock:
                        now = time.monotonic()
                        for member in item.members:
                            self.router.sent(due.node, member, now)

    def _packed(self, due: Due) -> list[Packed]:
        """Packing (encoding) runs outside the lock. Should it fail on something unforeseen, the node's entries
        go one per message rather than the sender thread ending (which would stop every node's downstream)."""
        try:
            return due.packed()
        except Exception:
            self.bus.counters.inc("batch_errors")
            log.exception("could not pack %d entries for %s; sending them one by one", len(due.envelopes), due.node)
            return [Packed(envelope, b"", (envelope,)) for envelope in due.envelopes]

    def _publish(self, node: str, item: Packed) -> bool:
        """One message down ``node``'s link; False when the broker did not take it (the rest of the node's pass
        waits for the next: its entries are still due)."""
        try:
            if item.payload:
                self.bus.connection.publish(topics.link_down(node), item.payload, qos=self.settings.down_qos,
                                            timeout=10)
            else:
                self.bus.publish(topics.link_down(node), item.envelope, timeout=10, qos=self.settings.down_qos)
        except Exception:
            log.warning("could not hand %s for %s to the broker", item.envelope.id, node, exc_info=True)
            return False
        if item.envelope.op == Op.BATCH:
            self.bus.counters.inc("downstream_batches")
            self.bus.counters.inc("downstream_batched", len(item.members))
        return True

    def _session_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                routed = self.router.expire(time.monotonic())
            self._carry_out(routed)

    def report(self) -> dict[str, Any]:
        """Every node's link, for hub/query answers (edgehive status) and metrics; a replica's own nodes only,
        and the live members it counts, so that whoever asks knows whose answers to wait for."""
        with self._lock:
            report = self.router.report(time.monotonic(), time.time())
        if self.membership is not None:
            report["members"] = sorted(self.membership.assignment.members)
        return report
