"""The bridge: the only thing that crosses between a node's edge broker and the cloud broker.

It carries the node's down topic from the cloud broker to the edge broker and its up
topic the other way, as opaque bytes. A message is acknowledged to the broker it
came from only once the other broker has acknowledged the copy, so killing the
bridge at any moment loses nothing: the source broker still holds whatever was not
passed on, in the bridge's persistent session, and delivers it again.

The node's stream topics (``edgehive/link/<node>/stream/{down,up}``: logs, exec, port-forward
frames) cross the same way, on connections, queues and threads of their own, so that a burst of
stream data never queues in front of the node's resource traffic: not inside the bridge, and not in
either broker, which sends one connection's messages in order (a 192 KB frame of a ``kubectl cp``
ahead of a 1 KB ConfigMap). The stream connections keep no session (``clean_start``): a stream
does not outlive its link, and a frame lost with a connection ends its stream, as it should.

The bridge also tells the edge whether the cloud is reachable, with a retained
envelope on ``edgehive/link/<node>/state``.

``down_qos``: the QoS of the subscription to the node's down topic on the cloud broker. 1 (the default) lets
mosquitto and amqtt keep what comes while the bridge is away, cheaply. On NATS each QoS 1 MQTT subscription is a
replicated JetStream consumer per node, created one after another; at 0 nothing is created, and nothing the
node needs rests on it: every resource is resent by CloudHub's per-node queue until MetaManager answers it, an
answer to an outbox entry is asked for again by EdgeHub's resend, a store listing of a resync is asked again
(cloud.nodesync, 4 times, then the node gets everything again), and nothing on the down topic is retained. What
QoS 0 costs is time: what comes while the bridge is away waits for CloudHub's resend (5 s, doubling to 60 s)
unless CloudHub saw the link drop (then all goes again when it is back). The stream topics keep QoS 1: a frame
lost there is part of a log or an exec session gone, and no one resends it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from broker.resourcefirst import ResourceTraffic
from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings, Incoming, TlsSettings, Will
from runtime.counters import Counters
from runtime.cpupriority import STREAM_NICE, lower_thread
from runtime.qos import check_qos
from runtime.url import BrokerUrl, describe
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.names import require_node_name

log = logging.getLogger(__name__)

MODULE = "bridge"
HELLO_REPEAT_S = 10.0
"""How long after the cloud connection comes up the bridge's retained hello is published once more. A NATS
cluster shares retained messages among its members asynchronously: a CloudHub replica subscribed on another
member than the bridge's can miss a hello both live and as retained, and then no replica serves a node that has
no Node yet (it cannot register). The repeat costs one retained publish per connection; a replica that had the
first hears of the same node again and changes nothing."""


@dataclass(frozen=True)
class BridgeSettings:
    node: str
    cloud: BrokerUrl
    edge: BrokerUrl
    cloud_tls: TlsSettings | None = None
    edge_tls: TlsSettings | None = None
    window: int = 100
    keepalive: int = 30
    cloud_keepalive: int = 10
    """MQTT keepalive towards the cloud: after 1.5 of them without a word the cloud broker publishes our
    will, so CloudHub learns of a silent cut (a dead radio link, a pulled cable) within 15 s."""
    reconnect_max_s: float = 5.0
    """The longest wait between attempts to reach the cloud: a node is back within seconds of its link."""
    cloud_alternates: tuple[BrokerUrl, ...] = ()
    """The cloud broker's other members (a NATS cluster): the bridge moves on to the next when its own dies."""
    down_qos: int = 1
    """QoS of the subscription to the node's down topic on the cloud broker (0 on NATS: see the module)."""

    def __post_init__(self) -> None:
        require_node_name(self.node)
        check_qos("down_qos", self.down_qos)

    @property
    def client_id(self) -> str:
        """Fixed per node, so that a restarted bridge resumes its persistent sessions."""
        return f"edgehive-bridge-{self.node}"

    @property
    def stream_client_id(self) -> str:
        return f"edgehive-bridge-{self.node}-stream"


def link_state(node: str, up: bool, reason: str) -> bytes:
    """The retained link-state envelope EdgeHub reads: ``body.state`` is ``up`` or ``down``."""
    envelope = Envelope(node=node, src=MODULE, group=Group.HUB, op=Op.CONNECTED if up else Op.DISCONNECTED,
                        body={"state": "up" if up else "down", "reason": reason})
    return envelope.encode()


@dataclass(frozen=True)
class _Item:
    topic: str
    payload: bytes
    retain: bool
    incoming: Incoming | None  # None for the bridge's own state messages


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        node = settings.node
        self.counters = Counters()
        self.cloud = Connection(
            ConnectionSettings(url=settings.cloud, client_id=settings.client_id, clean_start=False,
                               keepalive=settings.cloud_keepalive, window=settings.window, tls=settings.cloud_tls,
                               # CloudHub hears "gone" from the broker at once instead of after its timeout.
                               will=Will(topics.link_up(node), link_state(node, False, "link lost")),
                               backoff=Backoff(maximum=settings.reconnect_max_s),
                               alternates=settings.cloud_alternates),
            name=f"bridge-{node}-cloud",
        )
        self.edge = Connection(
            ConnectionSettings(url=settings.edge, client_id=settings.client_id, clean_start=False,
                               keepalive=settings.keepalive, window=settings.window, tls=settings.edge_tls,
                               will=Will(topics.link_state(node), link_state(node, False, "bridge lost"))),
            name=f"bridge-{node}-edge",
        )
        # The stream connections: no will (the link's state is the main connections' business), no session, and
        # their threads at the stream processes' CPU priority.
        self.cloud_stream = Connection(
            ConnectionSettings(url=settings.cloud, client_id=settings.stream_client_id, clean_start=True,
                               keepalive=settings.cloud_keepalive, window=settings.window, tls=settings.cloud_tls,
                               backoff=Backoff(maximum=settings.reconnect_max_s),
                               alternates=settings.cloud_alternates, nice=STREAM_NICE),
            name=f"bridge-{node}-cloud-stream",
        )
        self.edge_stream = Connection(
            ConnectionSettings(url=settings.edge, client_id=settings.stream_client_id, clean_start=True,
                               keepalive=settings.keepalive, window=settings.window, tls=settings.edge_tls,
                               nice=STREAM_NICE),
            name=f"bridge-{node}-edge-stream",
        )
        self._down: queue.Queue[_Item | None] = queue.Queue()
        self._up: queue.Queue[_Item | None] = queue.Queue()
        self._stream_down: queue.Queue[_Item | None] = queue.Queue()
        self._stream_up: queue.Queue[_Item | None] = queue.Queue()
        stream_down, stream_up = topics.stream(node, topics.Direction.DOWN), topics.stream(node, topics.Direction.UP)
        self.cloud.subscribe(topics.link_down(node), qos=settings.down_qos)
        self.cloud_stream.subscribe(stream_down)  # QoS 1 always: nothing resends a lost frame
        self.edge.subscribe(topics.link_up(node))
        self.edge_stream.subscribe(stream_up)
        self.resources = ResourceTraffic()
        for connection, into in ((self.cloud, self._down), (self.cloud_stream, self._stream_down),
                                 (self.edge, self._up), (self.edge_stream, self._stream_up)):
            connection.on_message(partial(self._take, into))
        self._hello_lock = threading.Lock()
        self._cloud_generation = 0  # the cloud connection's changes: a repeated hello is for one
        self.cloud.on_connection_change(self._cloud_changed)
        self.edge.on_connection_change(self._edge_changed)
        self._threads = [
            threading.Thread(target=self._forward, args=(source, target, direction), daemon=True,
                             name=f"bridge-{node}-{direction}")
            for source, target, direction in ((self._down, self.edge, "down"), (self._up, self.cloud, "up"),
                                              (self._stream_down, self.edge_stream, "stream_down"),
                                              (self._stream_up, self.cloud_stream, "stream_up"))
        ]

    def start(self) -> Bridge:
        for thread in self._threads:
            thread.start()
        for connection in (self.edge, self.edge_stream, self.cloud, self.cloud_stream):
            connection.start()
        log.info("bridge for node %s: cloud %s <-> edge %s (down topic at QoS %d)", self.settings.node,
                 describe((self.settings.cloud, *self.settings.cloud_alternates)), self.settings.edge,
                 self.settings.down_qos)
        return self

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop taking messages, pass on what is in hand, say the link is down, disconnect."""
        self.cloud.close(drain_timeout)
        self.cloud_stream.close(drain_timeout)
        self._queue_state(False, "bridge stopped")
        for source in (self._down, self._up, self._stream_down, self._stream_up):
            source.put(None)
        for thread in self._threads:
            thread.join(timeout=drain_timeout)
        self.edge_stream.close(drain_timeout)
        self.edge.close(drain_timeout)

    # The link state follows the cloud connection; it is (re)published whenever
    # the edge connection comes up, since a restarted edge broker forgets it.
    def _cloud_changed(self, up: bool) -> None:
        self._queue_state(up, "cloud broker connected" if up else "cloud broker unreachable")
        with self._hello_lock:
            self._cloud_generation += 1
            generation = self._cloud_generation
        if up:  # retained: CloudHub replicas learn of a node they have no Node for (topics.link_hello)
            self._hello()
            repeat = threading.Timer(HELLO_REPEAT_S, self._hello_again, (generation,))
            repeat.daemon = True
            repeat.start()

    def _hello(self) -> None:
        self._hold(self._up, _Item(topics.link_hello(self.settings.node),
                                   link_state(self.settings.node, True, "bridge connected"), True, None))

    def _hello_again(self, generation: int) -> None:
        """The hello once more (HELLO_REPEAT_S), if the connection it was for is still the one up."""
        with self._hello_lock:
            current = self._cloud_generation == generation
        if current and self.cloud.connected:
            self._hello()

    def _edge_changed(self, up: bool) -> None:
        if up:
            self._queue_state(self.cloud.connected, "edge broker connected")

    def _queue_state(self, up: bool, reason: str) -> None:
        # Through the down queue, never from a network thread: publishing may block.
        self._hold(self._down, _Item(topics.link_state(self.settings.node),
                                     link_state(self.settings.node, up, reason), True, None))

    def report(self) -> dict[str, dict[str, Any]]:
        """The bridge's state for metrics: both connections, what was forwarded, what waits."""
        counts = self.counters.snapshot()
        sides = {"cloud": self.cloud, "edge": self.edge, "cloud_stream": self.cloud_stream,
                 "edge_stream": self.edge_stream}
        connects = {side: c.counters.snapshot().get("connects", 0) for side, c in sides.items()}
        return {
            "connected": {side: c.connected for side, c in sides.items()},
            "reconnects": {side: max(0, n - 1) for side, n in connects.items()},
            "connect_failures": {side: c.counters.snapshot().get("connect_failures", 0) for side, c in sides.items()},
            "forwarded": {d: counts.get(f"forwarded_{d}", 0) for d in ("up", "down", "stream_up", "stream_down")},
            "pending": {"up": self._up.qsize(), "down": self._down.qsize(), "stream_up": self._stream_up.qsize(),
                        "stream_down": self._stream_down.qsize()},
        }

    def _take(self, into: queue.Queue[_Item | None], message: Incoming) -> None:
        self._hold(into, _Item(message.topic, message.payload, False, message))

    def _hold(self, into: queue.Queue[_Item | None], item: _Item) -> None:
        if into is self._down or into is self._up:
            self.resources.taken()
        into.put(item)

    def _forward(self, source: queue.Queue[_Item | None], target: Connection, direction: str) -> None:
        stream = source is self._stream_down or source is self._stream_up
        if stream:
            lower_thread(STREAM_NICE)
        while (item := source.get()) is not None:
            if stream and not self.resources.wait_quiet():
                self.counters.inc("stream_waits_ran_out")
            incoming = item.incoming
            on_acked: Callable[[], None] = partial(self._passed, incoming)
            if stream and incoming is not None:  # a stream frame was never counted as held: only acknowledged
                on_acked = incoming.ack
            target.publish(item.topic, item.payload, qos=1, retain=item.retain, on_acked=on_acked)
            if incoming is not None:
                self.counters.inc(f"forwarded_{direction}")

    def _passed(self, incoming: Incoming | None) -> None:
        """A resource message is with the other broker: acknowledged to its source, no longer held."""
        if incoming is not None:
            incoming.ack()
        self.resources.passed()


if __name__ == "__main__":  # python -m broker.bridge
    import argparse

    from broker import bridgecli

    parser = argparse.ArgumentParser(prog="python -m broker.bridge", description="Run one node's MQTT bridge.")
    bridgecli.add_bridge_arguments(parser)
    raise SystemExit(bridgecli.bridge_main(parser.parse_args()))
