"""One MQTT connection: reconnects by itself, bounds what it has in flight, acknowledges on request.

This is the only module that imports paho-mqtt. It moves bytes, never envelopes:
the bus (envelopes) and the bridge (opaque payloads) both sit on top of it.

Two choices carry the delivery guarantees above it:

- Publishing takes a slot in a fixed window and gives it back on the broker's
  PUBACK, so a publisher blocks instead of queueing without bound while the
  broker is slow or gone (paho alone queues everything in memory).
- Incoming QoS 1 messages are acknowledged only when the consumer says so
  (``Incoming.ack()``), so a message the process had not finished with when it
  died is delivered again by the broker, to a persistent session.

It is one piece of about 500 lines on purpose: the in-flight window, the subscriptions with their packet ids
and retries, and the hop between cluster members are one state, changed under one lock by both the caller's
threads and paho's network thread; split apart, each part would reach into the others' locked state. What a
connection is given and hands out (settings, identity, messages) is apart, in ``runtime.connsettings``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from runtime.backoff import MemberRetry
from runtime.connsettings import ClientIdentity, ConnectionSettings, Incoming, TlsSettings, Will
from runtime.counters import Counters
from runtime.cpupriority import lower_thread
from runtime.errors import ComponentRuntimeError
from runtime.readbuffer import ReadBufferedSocket
from runtime.url import BrokerUrl
from schemas.topics import topic_class

__all__ = [
    "ClientIdentity", "Connection", "ConnectionListener", "ConnectionSettings", "Incoming", "MessageHandler",
    "PublishTimeout", "TlsSettings", "Will",
]

log = logging.getLogger(__name__)

SUBSCRIBE_RETRY_S = 1.0
"""Pause before asking again for a subscription the broker refused."""
SUBSCRIBE_PACK = 100
"""Topic filters asked for in one SUBSCRIBE or UNSUBSCRIBE packet. A CloudHub replica subscribes to each node it
takes over, and again to every one after a reconnect: on three NATS members 300 filters took 0.17 s one to a
packet and 0.01 s fifty to a packet (measured), and the session's other traffic waits behind them. A hundred
link topics make a packet of about 4 KB."""
LOOP_WAIT_S = 1.0
"""The longest the network thread waits for the socket. Everything that needs it sooner wakes it: paho's own
pipe on every publish, subscribe and disconnect (close() sends one), the broker's bytes. What is left for the
timeout is coarse (keepalive pings, the CONNACK deadline, refused subscriptions asked again after a second).
At 0.1 s the wakes of an idle connection cost 6 ms of CPU a second (measured on a cloud component), two thirds
of an idle process's CPU; the wakes of every replica of every component add up in a fleet's control plane."""


_Item = TypeVar("_Item")


def _packs(items: list[_Item]) -> Iterator[list[_Item]]:
    """``items`` in packets of at most SUBSCRIBE_PACK."""
    for start in range(0, len(items), SUBSCRIBE_PACK):
        yield items[start:start + SUBSCRIBE_PACK]


class PublishTimeout(ComponentRuntimeError, TimeoutError):
    """The in-flight window stayed full for the whole timeout: the broker is slow or unreachable."""


MessageHandler = Callable[[Incoming], None]
ConnectionListener = Callable[[bool], None]


class Connection:
    """A self-healing MQTT 3.1.1 connection with a bounded publish window and manual acks.

    ``start()`` returns at once; the connection is made (and remade, with jittered
    exponential backoff) by a background thread. Subscriptions are remembered and
    renewed on every connect.
    """

    def __init__(self, settings: ConnectionSettings, *, name: str = "mqtt") -> None:
        self.settings = settings
        self.name = name
        self.counters = Counters()
        self._handler: MessageHandler = lambda incoming: incoming.ack()
        self._listeners: list[ConnectionListener] = []
        self._session_lost_listeners: list[Callable[[], None]] = []
        self._subscribed_listeners: list[Callable[[str], None]] = []
        self._session_present = False
        self._ever_ready = False
        self._subscriptions: dict[str, int] = {}
        self._unsubscribe_later: set[str] = set()
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumps on every connect attempt; acks for an older one are stale
        self._opened_at = 0.0  # when the current connection was opened (monotonic)
        self._connack = True  # the broker has answered it (no connection yet: nothing to wait for)
        self._accepted_at: float | None = None  # when the broker accepted this connection (monotonic); None: off
        # Under _lock: the connect's own subscriptions have been asked for, so a subscribe or unsubscribe from
        # now on goes out at once, without waiting for their SUBACKs (or it would wait for the next connect).
        self._session_open = False
        # paho is not safe against a publish (or ack) from another thread while it opens a new
        # socket: the packet can leave before CONNECT and the broker drops the connection
        # (measured with amqtt). Connecting and every write from outside the network thread
        # take this lock.
        self._io_lock = threading.Lock()
        self._network_thread: int | None = None
        self._deferred: collections.deque[Callable[[], None]] = collections.deque()
        self._sub_mids: dict[int, tuple[str, ...]] = {}  # SUBSCRIBE packet id -> its topic filters, until the SUBACK
        self._early_subacks: dict[int, list[ReasonCode]] = {}  # SUBACKs (a code per filter) that beat subscribe()
        # to registering their packet id
        self._sub_retries: dict[str, float] = {}  # refused topic filter -> when to ask again (monotonic)
        # The publish window: free slots, and what to do when each PUBACK arrives.
        self._slots = threading.Semaphore(settings.window)
        self._lock = threading.Lock()
        self._pending: dict[int, Callable[[], None] | None] = {}
        self._early: set[int] = set()  # PUBACKs that arrived before publish() registered the mid
        self._inflight = 0
        self._awaiting_suback: set[int] = set()
        self._drained = threading.Condition(self._lock)
        self._identity = ClientIdentity(settings.tls) if settings.url.tls else None
        self._urls = (settings.url, *settings.alternates)
        self._at = 0  # which of _urls is in use
        self._moved = False  # the next connect goes to another member: paho's reconnect() would not
        self._retry = MemberRetry(len(self._urls), settings.backoff)
        self._client = self._make_client()

    # -- set-up ----------------------------------------------------------------

    def _make_client(self) -> _Client:
        s = self.settings
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=s.clean_start,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=False,  # our thread reconnects, with jitter
        )
        client.max_inflight_messages_set(0)  # our window bounds it; paho queueing too could reorder
        client.max_queued_messages_set(0)
        if s.url.username is not None:
            client.username_pw_set(s.url.username, s.url.password)
        if self._identity is not None:
            client.tls_set_context(self._identity.context)
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, qos=1, retain=s.will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.sent_qos0 = self._published
        client.on_subscribe = self._on_subscribe
        # Without an "external loop", paho writes from whichever thread calls publish(),
        # racing our network thread for the same packet queue: packets then leave out of
        # order (measured: adjacent QoS 1 messages swapped). With this hook set, publish()
        # only queues and wakes the network thread, the one writer.
        client.on_socket_register_write = lambda *_: None
        client.direct_writes = self._identity is None  # _Client says why not on TLS
        return client

    def on_message(self, handler: MessageHandler) -> None:
        """Set the one handler for every incoming message; it runs on the network thread and must not block."""
        self._handler = handler

    def on_connection_change(self, listener: ConnectionListener) -> None:
        self._listeners.append(listener)

    def on_session_lost(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the network thread, so it must not block) when a reconnect finds that the
        broker no longer has this client's session: a broker restarted without its store has dropped
        whatever it held for us, and whatever it held for everyone else too."""
        self._session_lost_listeners.append(listener)

    def on_subscribed(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with a topic filter (on the network thread, so it must not block) each time the broker
        grants a subscription to it (its SUBACK): only then is what is published on it delivered here. Also after
        every reconnect, for each subscription asked for again."""
        self._subscribed_listeners.append(listener)

    def subscriptions(self) -> dict[str, int]:
        """The topic filters asked for and their QoS: what every reconnect asks for again."""
        with self._lock:
            return dict(self._subscriptions)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if the broker has accepted the connection (the SUBACKs of the connect's own
        subscriptions may still be coming), and again after every reconnect."""
        self.subscribe_many([(topic_filter, qos)])

    def subscribe_many(self, filters: Sequence[tuple[str, int]]) -> None:
        """``subscribe`` for many topic filters (with their QoS), asked for SUBSCRIBE_PACK to a packet: each
        filter's SUBACK still reaches ``on_subscribed`` on its own, and a refused one is asked for again alone."""
        with self._lock:
            for topic_filter, qos in filters:
                self._subscriptions[topic_filter] = qos
            now = self._session_open
        if now:
            self._ask(list(filters))

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving ``topic_filter``: now if connected, and on the next connect if not (a persistent
        session would otherwise keep the subscription on the broker after this client forgot it)."""
        self.unsubscribe_many([topic_filter])

    def unsubscribe_many(self, topic_filters: Sequence[str]) -> None:
        """``unsubscribe`` for many topic filters, SUBSCRIBE_PACK to a packet."""
        with self._lock:
            for topic_filter in topic_filters:
                self._subscriptions.pop(topic_filter, None)
            self._unsubscribe_later.update(topic_filters)
            now = self._session_open
        if now:
            for pack in _packs(list(topic_filters)):
                with self._io_lock:
                    self._client.unsubscribe(pack)
            with self._lock:
                self._unsubscribe_later.difference_update(topic_filters)

    def _ask(self, filters: list[tuple[str, int]]) -> None:
        """SUBSCRIBE packets for ``filters`` on an open session, their packet ids registered for the SUBACKs
        (any thread; on another than the network thread a SUBACK may come before its id is registered)."""
        for pack in _packs(filters):
            with self._io_lock:
                _rc, mid = self._client.subscribe(pack)
            if mid is None:
                continue
            names = tuple(topic_filter for topic_filter, _qos in pack)
            with self._lock:
                early = self._early_subacks.pop(mid, None)
                if early is None:
                    self._sub_mids[mid] = names
            if early is not None:
                self._answered(names, early)

    # -- life cycle ------------------------------------------------------------

    def start(self) -> Connection:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-network", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> BrokerUrl:
        """The broker (member) this connection uses or tries now."""
        return self._urls[self._at]

    def _next_member(self) -> None:
        if len(self._urls) > 1:
            self._at = (self._at + 1) % len(self._urls)
            self._moved = True
            self.counters.inc("member_switches")

    @property
    def connected(self) -> bool:
        """Connected, with every subscription made before the connect acknowledged."""
        return self._connected.is_set()

    def on_broker(self, settle_s: float) -> bool:
        """Connected, or accepted by the broker less than ``settle_s`` ago and still having its subscriptions
        acknowledged again.

        For a replica deciding whether to keep its Lease: a persistent session keeps its subscriptions (and
        what arrives for them) on the broker while we ask for each again, and on NATS, right after a member's
        death, the SUBACKs of a few hundred per-node subscriptions take seconds; counting those seconds as off
        the broker made a replica drop every node it had and take them all back a moment later. A connection
        whose subscriptions are not all back within ``settle_s`` counts as off again."""
        if self._connected.is_set():
            return True
        accepted = self._accepted_at
        return accepted is not None and time.monotonic() - accepted < settle_s

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def close(self, drain_timeout: float = 5.0) -> bool:
        """Wait (up to ``drain_timeout``) for in-flight publishes to be acknowledged, then disconnect.

        Returns whether everything in flight was acknowledged.
        """
        drained = self.drain(drain_timeout) if self._connected.is_set() else self._inflight == 0
        self._closing.set()
        with self._io_lock:  # the DISCONNECT wakes the network thread from its wait for the socket
            self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return drained

    def drain(self, timeout: float) -> bool:
        with self._drained:
            return self._drained.wait_for(lambda: self._inflight == 0, timeout)

    def _run(self) -> None:
        self._network_thread = threading.get_ident()
        self._client.network_thread = self._network_thread
        if self.settings.nice:
            lower_thread(self.settings.nice)
        first = True
        while not self._closing.is_set():
            if not self._socket_open():
                try:
                    with self._io_lock:
                        self._generation += 1
                        if first or self._moved:
                            url = self.url
                            if not first and self._identity is not None:
                                self._identity.refresh(self.name)
                            self._client.connect(url.host, url.port, keepalive=self.settings.keepalive)
                            first = self._moved = False
                        else:
                            if self._identity is not None:
                                self._identity.refresh(self.name)
                            self._client.reconnect()
                        self._no_delay()
                        self._opened_at, self._connack = time.monotonic(), False
                except (OSError, ssl.SSLError) as exc:
                    self._wait_before_retry(f"cannot connect ({exc})")
                    self._next_member()
                    continue
            try:
                rc = self._client.loop(timeout=LOOP_WAIT_S)
            except Exception:
                # A fault of ours or paho's in the loop: had it ended this thread, the connection would have
                # stayed open and silent for good, every publish waiting on a window nobody frees.
                self.counters.inc("loop_errors")
                log.exception("%s: the network loop failed; reconnecting", self.name)
                with self._io_lock:
                    self._client._sock_close()
                rc = MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not self._connack and time.monotonic() - self._opened_at > self.settings.connack_timeout:
                rc = self._drop_silent_broker()
            self._run_deferred()
            self._retry_refused_subscriptions()
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,) and not self._closing.is_set():
                self._mark_disconnected()
                self._wait_before_retry(f"connection lost ({mqtt.error_string(rc)})")
                self._next_member()
        with contextlib.suppress(Exception):
            self._client.disconnect()
            self._client.loop(timeout=0.1)
        self._mark_disconnected()

    def _drop_silent_broker(self) -> MQTTErrorCode:
        """Close a connection the broker took (TCP, TLS) but has not answered with a CONNACK in time: a broker
        stuck taking over an old session, or a middlebox that swallows the bytes, would otherwise hold the
        connection down for a keepalive per attempt."""
        self.counters.inc("connack_timeouts")
        log.warning("%s: no CONNACK from %s in %.0f s; dropping the connection", self.name, self.url,
                    self.settings.connack_timeout)
        with self._io_lock:
            self._client._sock_close()  # paho has no public way to drop a connection that is not up
        return MQTTErrorCode.MQTT_ERR_CONN_LOST

    def _no_delay(self) -> None:
        """paho leaves Nagle's algorithm on: at low rates each small packet then waits for the
        broker's delayed ACK, up to 40 ms (measured: 70 ms round trips at 100 msg/s)."""
        sock = getattr(self._client.socket(), "raw", None)
        if isinstance(sock, socket.socket):  # an SSLSocket is one too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _socket_open(self) -> bool:
        return self._client.socket() is not None

    def _wait_before_retry(self, why: str) -> None:
        delay = self._retry.failed(time.monotonic())  # the next member, after a hop or the backoff (MemberRetry)
        self.counters.inc("connect_failures")
        attempts = self._retry.backoff.attempts
        level = logging.INFO if attempts <= 3 else logging.WARNING
        log.log(level, "%s: %s %s; retrying in %.1f s (attempt %d)", self.name, self.url, why, delay, attempts)
        self._closing.wait(delay)

    # -- paho callbacks (network thread) --------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, code: ReasonCode, _p: Any) -> None:
        self._connack = True
        if code.is_failure:
            self.counters.inc("connect_refused")
            log.error("%s: %s refused the connection: %s (check the username, password and ACL)",
                      self.name, self.url, code)
            return
        self._retry.connected()
        self._accepted_at = time.monotonic()
        self.counters.inc("connects")
        self._session_present = bool(getattr(flags, "session_present", False))
        log.info("%s: connected to %s (session present: %s)", self.name, self.url, self._session_present)
        with self._lock:
            subscriptions = list(self._subscriptions.items())
            self._awaiting_suback = set()
            for unwanted in _packs(sorted(self._unsubscribe_later - set(self._subscriptions))):
                client.unsubscribe(unwanted)
            self._unsubscribe_later.clear()
            self._sub_mids.clear()
            self._early_subacks.clear()
            self._sub_retries.clear()  # asked again just now
            for pack in _packs(subscriptions):
                _rc, mid = client.subscribe(pack)
                if mid is not None:
                    self._awaiting_suback.add(mid)
                    self._sub_mids[mid] = tuple(topic_filter for topic_filter, _qos in pack)
            self._session_open = True
            ready = not self._awaiting_suback
        if ready:
            self._mark_ready()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        with self._lock:
            names = self._sub_mids.pop(mid, None)
            if names is None and mid not in self._awaiting_suback:
                # subscribe() from another thread has not registered its packet id yet: it finishes the job
                self._early_subacks[mid] = list(codes)
                return
        if names is not None:
            self._answered(names, codes)
        with self._lock:
            if mid not in self._awaiting_suback:
                return
            self._awaiting_suback.discard(mid)
            ready = not self._awaiting_suback
        if ready:
            self._mark_ready()

    def _answered(self, names: tuple[str, ...], codes: list[ReasonCode]) -> None:
        """The SUBACK of a packet of ``names``, a code per filter in the packet's order: the granted filters to the
        listeners, the refused ones (and any the broker gave no code for) asked for again later."""
        for index, topic_filter in enumerate(names):
            code = codes[index] if index < len(codes) else None
            if code is not None and not code.is_failure:
                self._granted(topic_filter)
                continue
            self.counters.inc("subscribe_refused")
            log.error("%s: %s refused a subscription to %s (%s): check the ACL for this user (on NATS, also "
                      "whether this session's subscriptions pass 65,535 max_ack_pending together); asking again "
                      "in %.0f s", self.name, self.url, topic_filter, code or "no code in the SUBACK",
                      SUBSCRIBE_RETRY_S)
            # A refusal is not always the ACL: NATS refuses a QoS 1 subscription whose JetStream consumer it
            # could not create in time (a loaded cluster, or one electing leaders after a member died), and a
            # subscription never asked for again would leave a CloudHub replica deaf to its node.
            with self._lock:
                self._sub_retries[topic_filter] = time.monotonic() + SUBSCRIBE_RETRY_S

    def _granted(self, topic_filter: str) -> None:
        for listener in self._subscribed_listeners:
            try:
                listener(topic_filter)
            except Exception:
                log.exception("%s: a listener for the SUBACK of %s failed", self.name, topic_filter)

    def _retry_refused_subscriptions(self) -> None:
        """Ask again for the refused subscriptions that are due and still wanted (network thread)."""
        if not self._sub_retries or not self._connected.is_set():
            return
        now = time.monotonic()
        with self._lock:
            due = [(t, self._subscriptions[t]) for t, at in self._sub_retries.items()
                   if at <= now and t in self._subscriptions]
            for topic_filter in [t for t, at in self._sub_retries.items() if at <= now]:
                del self._sub_retries[topic_filter]
        self._ask(due)

    def _mark_ready(self) -> None:
        """Connected and every subscription acknowledged: only now can nothing addressed to us be missed."""
        if self._ever_ready and not self._session_present and not self.settings.clean_start:
            self.counters.inc("sessions_lost")
            log.warning("%s: %s had lost this client's session; what it held for us is gone", self.name,
                        self.url)
            for lost_listener in self._session_lost_listeners:
                try:
                    lost_listener()
                except Exception:
                    log.exception("%s: session-lost listener failed", self.name)
        self._ever_ready = True
        self._connected.set()
        for listener in self._listeners:
            self._call_listener(listener, True)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        if self._connected.is_set():
            log.info("%s: disconnected from %s (%s)", self.name, self.url, code)
        self._mark_disconnected()

    def _mark_disconnected(self) -> None:
        self._accepted_at = None
        self._session_open = False  # no lock: a subscribe that still sends now is asked for again at the connect
        if self._connected.is_set():
            self._connected.clear()
            self.counters.inc("disconnects")
            for listener in self._listeners:
                self._call_listener(listener, False)

    def _call_listener(self, listener: ConnectionListener, up: bool) -> None:
        try:
            listener(up)
        except Exception:
            log.exception("%s: connection listener failed", self.name)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.counters.inc("received")
        self.counters.inc(f"in:{topic_class(message.topic)}")
        if message.dup:  # sent again by the broker: after a reconnect, or (NATS) an ack wait that ran out
            self.counters.inc("received_dup")
        generation = self._generation
        mid, qos = message.mid, message.qos

        def ack() -> None:
            # After a reconnect the broker redelivers what we had not acknowledged,
            # possibly under the same packet id: an ack from before would hit the wrong message.
            if qos == 0:
                return
            if threading.get_ident() == self._network_thread:
                # Only this thread reconnects, so no lock is needed; taking it here, inside
                # paho's callback, could deadlock with a publisher holding it.
                if generation == self._generation:
                    self._client.ack(mid, qos)
                return
            with self._io_lock:
                if generation == self._generation:
                    self._client.ack(mid, qos)

        incoming = Incoming(message.topic, bytes(message.payload), qos, bool(message.retain), bool(message.dup), ack)
        try:
            self._handler(incoming)
        except Exception:
            self.counters.inc("handler_errors")
            log.exception("%s: message handler failed on %s", self.name, message.topic)
            incoming.ack()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _code: Any, _p: Any) -> None:
        self._published(mid)

    def _published(self, mid: int) -> None:
        """The broker has ``mid`` (its PUBACK), or, at QoS 0, it has left: on paho's network thread, or (a QoS 0
        message written by its publisher, _Client.sent_qos0) on the publishing thread before publish() has
        registered it."""
        with self._lock:
            if mid in self._pending:
                callback = self._pending.pop(mid)
            else:
                self._early.add(mid)
                return
        # paho calls this holding its outgoing-message lock; a callback that takes another
        # connection's lock (the bridge acks the source broker here) could close a cycle
        # of four threads. It runs after loop() returns, with no paho lock held.
        self._complete(None)
        if callback is not None:
            self._deferred.append(callback)

    def _run_deferred(self) -> None:
        while self._deferred:
            callback = self._deferred.popleft()
            try:
                callback()
            except Exception:
                log.exception("%s: publish callback failed", self.name)

    def _complete(self, callback: Callable[[], None] | None) -> None:
        with self._drained:
            self._inflight -= 1
            if self._inflight == 0:  # all a waiter on _drained waits for (wait_drained); notifying on every
                self._drained.notify_all()  # acknowledgement was 8 % of EventBus's time in bench twin
        self._slots.release()
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("%s: publish callback failed", self.name)

    # -- publishing -------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
        timeout: float | None = None, on_acked: Callable[[], None] | None = None,
    ) -> bool:
        """Publish, blocking while the window is full; ``on_acked`` runs once the broker has it.

        QoS 1 messages published while disconnected wait in the window and go out
        on reconnect; QoS 0 messages are dropped then (counted, and False returned).
        """
        if not self._slots.acquire(blocking=False) and not self._slot_after_flush(timeout):
            self.counters.inc("publish_timeouts")
            raise PublishTimeout(f"{self.name}: {self.settings.window} publishes still unacknowledged after "
                                 f"{timeout} s; is {self.url} reachable?")
        with self._lock:
            self._inflight += 1
        try:
            with self._io_lock:
                info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except Exception:
            # paho refuses a bad topic (empty, wildcards), QoS or payload type with ValueError/TypeError
            # before anything is sent: give the slot back, or every such call leaks one and after
            # ``window`` of them this connection can never publish again.
            self._complete(None)
            raise
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            self.counters.inc("dropped_qos0")
            self._complete(None)
            return False
        self.counters.inc("published")
        self.counters.inc(f"out:{topic_class(topic)}")
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending[info.mid] = on_acked
                return True
        self._complete(on_acked)
        return True

    def _slot_after_flush(self, timeout: float | None) -> bool:
        """Wait for a slot of the full window. What this thread holds back (``corked``) goes out first: those
        publishes hold slots that only their PUBACKs can free."""
        with self._io_lock:
            self._client.flush_cork()
        return self._slots.acquire(timeout=timeout)

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Write this thread's QoS 1 publishes inside the block together, when it ends (or when the window fills
        up): for a burst of answers, one write and one hand-over of the interpreter lock to the network thread,
        not one per message, which kept EventBus's answering thread and its network thread waiting on each other
        (py-spy under ``bench twin``: two fifths of the answering thread's time). A QoS 0 publish in the block goes
        at once, after what was held back. Nothing changes without direct writes (TLS), or inside another
        ``corked`` block."""
        with self._io_lock:
            mine = self._client.cork()
        try:
            yield
        finally:
            if mine:
                with self._io_lock:
                    self._client.uncork()

    @property
    def inflight(self) -> int:
        return self._inflight


_JOINED_BYTES = 256 * 1024
"""At most about this much of paho's queue goes out in one joined write."""

_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
"""What paho's PUBACK decoding gives on_publish for every MQTT 3.1.1 PUBACK, made once (on_publish reads neither)."""


class _Client(mqtt.Client):
    """paho's client on a socket whose reads are buffered (runtime/readbuffer.py says why), written by one
    thread at a time, and by the publishing thread itself when it can.

    paho hands a packet queued by another thread to the network thread through a pipe: a wake, a pass of its
    loop and the write, about 50 us of CPU per publish measured on stock paho against mosquitto, and most of a
    publish's cost in the twin path. So a PUBLISH (QoS 1) or a PUBACK from another thread is written at once by
    that thread when nothing is queued before it and no one else is writing (``_write_lock``, which paho's own
    writes take too): the order on the wire stays the order of the calls, as with one writer. Anything else, a
    packet with others before it, a socket that would block, a write that fails, goes to paho's queue and wakes
    the network thread as before. Not on TLS: an SSL object must not be read and written by two threads at once.
    A QoS 0 PUBLISH written this way is reported through ``sent_qos0`` rather than paho's on_publish, which paho
    runs under its callback lock: a bridge's two network threads, each in a callback publishing to the other's
    client, would take those locks in opposite orders. (On NATS, where the cloud's own hops are QoS 0, the wakes
    were a fifth to a third of a lightly loaded CloudHub's CPU.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = threading.Lock()
        self.direct_writes = False
        self.direct_written = 0  # packets written by the calling thread (for tests and profiles)
        self.network_thread: int | None = None
        self.sent_qos0: Callable[[int], None] = lambda _mid: None
        """Told the packet id of each QoS 0 PUBLISH written whole by its publishing thread (no on_publish)."""
        self._corks = threading.local()  # per thread: (the socket, its QoS 1 PUBLISH packets held back) or None
        self.cork_writes = 0  # writes of held-back packets (for tests and profiles)

    def _create_socket(self) -> Any:
        return ReadBufferedSocket(super()._create_socket())

    def _packet_write(self) -> MQTTErrorCode:
        with self._write_lock:
            joined = self._write_joined()
            if joined is not None:
                return joined
            return super()._packet_write()

    def _write_joined(self) -> MQTTErrorCode | None:
        """Write the queued packets that need nothing done once written (PUBACKs, QoS 1 PUBLISHes), as many as
        lead the queue, in one system call: paho writes one packet per call, and a network thread acknowledging
        a burst of messages made one call per PUBACK. None when paho's own is to go on: fewer than two such
        packets lead the queue, or all of them have been written."""
        if not self.direct_writes:
            return None  # TLS: a write OpenSSL asks to repeat must be repeated as it was, not longer
        queue = self._out_packet
        run: list[Any] = []
        size = 0
        # By index, not by iterating: other threads append to the queue without the write lock (paho's
        # _packet_queue), which would end an iteration with "deque mutated"; only holders of the write lock
        # take from its head or put back there.
        for index in range(len(queue)):
            packet = queue[index]
            kind = packet["command"] & 0xF0
            if not (kind == mqtt.PUBACK or (kind == mqtt.PUBLISH and packet["qos"] > 0)) or size > _JOINED_BYTES:
                break
            run.append(packet)
            size += packet["to_process"]
        if len(run) < 2:
            return None
        try:
            sent = self._sock_send(b"".join(packet["packet"][packet["pos"]:] for packet in run))
        except (AttributeError, ValueError):
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # no socket: as paho's own, which leaves the queue as it is
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to write on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_msg_out = mqtt.time_func()
        for packet in run:
            if sent < packet["to_process"]:  # the socket is full: the rest on the loop's next pass
                packet["pos"] += sent
                packet["to_process"] -= sent
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            sent -= packet["to_process"]
            queue.popleft()
        return None  # all of the run written: paho's own goes on with what follows it

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> MQTTErrorCode:
        kind = command & 0xF0
        direct = kind in (mqtt.PUBACK, mqtt.PUBLISH)
        if threading.get_ident() == self.network_thread:
            # The network thread's own packets (the PUBACKs of what it reads) wait for its loop's next pass, which
            # writes whatever is queued; paho also woke the loop through its socket pair, two system calls per
            # packet for a thread that is awake already.
            self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                     "to_process": len(packet), "packet": packet, "info": info})
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if direct and self.direct_writes:
            cork = getattr(self._corks, "held", None)
            if cork is not None and kind == mqtt.PUBLISH and qos > 0 and cork[0] is self._sock is not None:
                cork[1].append(packet)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if cork is not None:
                self.flush_cork()  # whatever comes next goes after what this thread held back
            if self._write_direct(command, packet, mid, qos, info):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_queue(command, packet, mid, qos, info)

    def cork(self) -> bool:
        """Hold this thread's QoS 1 PUBLISH packets back until :meth:`uncork`, to write them at once: one system
        call, and one hand-over of the interpreter lock, instead of one for each. False (nothing changed) when
        this thread holds packets back already, or when the client cannot write directly."""
        if not self.direct_writes or getattr(self._corks, "held", None) is not None:
            return False
        self._corks.held = (self._sock, [])
        return True

    def uncork(self) -> None:
        self.flush_cork()
        self._corks.held = None

    def flush_cork(self) -> None:
        """Write what this thread has held back, and go on holding back. Packets held for a socket that has
        since closed are dropped: paho publishes their messages again (as DUP) once it has reconnected, as for
        any message the broker had not acknowledged."""
        cork = getattr(self._corks, "held", None)
        if cork is None:
            return
        sock, packets = cork
        self._corks.held = (self._sock, [])
        if not packets or sock is not self._sock:
            return
        joined = packets[0] if len(packets) == 1 else b"".join(packets)
        self.cork_writes += 1
        if not self._write_direct(mqtt.PUBLISH | 0x02, joined, 0, 1, None):
            for packet in packets:  # behind what another thread queued, in their order
                super()._packet_queue(mqtt.PUBLISH | 0x02, packet, 0, 1, None)

    def _write_direct(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None) -> bool:
        """Write ``packet`` now; False (nothing written) when it must go through paho's queue instead."""
        if self._sock is None or not self._write_lock.acquire(blocking=False):
            return False
        try:
            if self._out_packet:
                return False
            try:
                sent = self._sock_send(packet)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (OSError, ValueError, AttributeError):
                return False  # the network thread meets the same error on the queued packet and handles it
            now = mqtt.time_func()
            if sent < len(packet):  # the rest first in paho's queue, and the network thread to wait for room
                self._out_packet.appendleft({"command": command, "mid": mid, "qos": qos, "pos": sent,
                                             "to_process": len(packet) - sent, "packet": packet, "info": info})
                self._wake_network_thread()
            elif command & 0xF0 == mqtt.PUBLISH and qos == 0:
                if info is not None:
                    info._set_as_published()
                self.sent_qos0(mid)
            with self._msgtime_mutex:
                self._last_msg_out = now
            self.direct_written += 1
            return True
        finally:
            self._write_lock.release()

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        """A PUBACK of MQTT 3.1.1 (a packet id and nothing else) read without paho's decoding, which built a
        reason code and an empty property set for every one (MQTT 5's, which 3.1.1 has not): a tenth of
        EventBus's CPU under devices' load, where each update is answered by two QoS 1 publishes. Anything
        else (PUBCOMP, MQTT 5, a packet of the wrong size, which paho refuses) goes to paho's own."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol != mqtt.MQTTv311 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received %s (Mid: %d)", cmd, mid)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """Straight to on_message: paho matched every message's topic against the filters of per-topic callbacks,
        which this client never has (``message_callback_add`` is refused)."""
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("per-topic callbacks: Connection routes every message to one handler")

    def _wake_network_thread(self) -> None:
        wake = self._sockpairW
        if wake is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                wake.send(b"0")
