"""The bus: envelopes over one MQTT connection, for every component.

Handlers run one at a time on a worker thread, never on the network thread, so a
handler may publish or wait for a reply without stalling acknowledgements. A
message is acknowledged to the broker only after its handler returned, so a crash
mid-handler means redelivery, not loss.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.counters import Counters
from runtime.errors import ComponentRuntimeError
from schemas import topics
from schemas.batch import Batch
from schemas.envelope import (
    DEFAULT_MAX_SIZE,
    FIELDS,
    Envelope,
    EnvelopeError,
    ErrorBody,
    Group,
    Op,
    RawSend,
    Salvage,
    Send,
    decode,
    salvage,
)

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, str], Iterable[Send | RawSend] | None]
"""Takes an envelope and the topic it came on; returns what to publish in answer (or None)."""

RawHandler = Callable[[str, bytes], Iterable[Send | RawSend] | None]
"""For topics that do not carry envelopes (devices speak JSON): the topic and the payload as received."""

Taker = Callable[[str, bytes], None]
"""Takes an undecoded message on the network thread (see ``Bus.take_raw``)."""


class RequestTimeout(ComponentRuntimeError, TimeoutError):
    """No reply arrived in time."""


class BusClosed(RequestTimeout):
    """The bus closed while a request waited (or before it was made): no reply will come. A RequestTimeout, so
    that whoever gives up on a missing reply gives up on this one too, at once instead of at its deadline."""


class RequestError(ComponentRuntimeError, RuntimeError):
    """The other side answered with an ``error`` envelope."""

    def __init__(self, reply: Envelope) -> None:
        answer = ErrorBody.read(reply.body)
        self.code = answer.code
        self.reason = answer.reason
        self.reply = reply
        super().__init__(f"{reply.src} answered {self.code}: {self.reason}")


@dataclass(frozen=True)
class BusSettings:
    connection: ConnectionSettings
    module: str
    """This component's name: the ``src`` of what it sends and the name of its inbox."""
    side: topics.Side
    node: str
    """The node this component belongs to (on the cloud side, a default for its own messages)."""
    max_size: int = DEFAULT_MAX_SIZE


ErrorRoute = Callable[[str, Salvage], str | None]
"""Given the topic a bad message came on and what was salvaged from it, where the error reply goes."""


@dataclass(frozen=True)
class _Route:
    """Who takes a topic's messages, worked out once per topic (matching every filter for every message was a
    twentieth of EventBus's time under devices' load)."""

    raw: tuple[RawHandler, ...]
    handlers: tuple[Handler, ...]
    batches: bool
    takers: tuple[Taker, ...] = ()


ROUTES_KEPT = 4096
"""Topics whose route is kept; past that the kept ones are dropped and worked out again (topics are per device
and per node, so a component sees a bounded but possibly large set)."""


@dataclass
class _Waiter:
    event: threading.Event = field(default_factory=threading.Event)
    reply: Envelope | None = None


class Asked:
    """A request published by :meth:`Bus.ask`, its reply not waited for yet."""

    def __init__(self, bus: Bus, topic: str, envelope: Envelope, waiter: _Waiter, deadline: float, timeout: float,
                 closed: BusClosed, resend_at: float = math.inf) -> None:
        self._bus = bus
        self._topic = topic
        self._envelope = envelope
        self._waiter = waiter
        self._deadline = deadline
        self._timeout = timeout
        self._closed = closed
        self._resend_at = resend_at

    def answer(self) -> Envelope:
        """The reply, waited for until the request's deadline (counted from when it was asked); asked once
        more, with the same id, if none has come by the time ``resend_after`` said.

        Raises RequestTimeout when none comes in time and RequestError when the answer is ``error``."""
        try:
            while not self._waiter.event.wait(max(0.0, min(self._deadline, self._resend_at) - time.monotonic())):
                now = time.monotonic()
                if now >= self._deadline:
                    self._bus.counters.inc("request_timeouts")
                    raise RequestTimeout(f"no reply to {self._envelope.op.value} {self._envelope.res or ''} on "
                                         f"{self._topic} within {self._timeout} s")
                if now >= self._resend_at:
                    self._resend_at = math.inf
                    self._bus.counters.inc("request_resends")
                    self._bus.publish(self._topic, self._envelope, timeout=max(0.1, self._deadline - now))
        finally:
            self.forget()
        reply = self._waiter.reply
        if reply is None:
            raise self._closed
        if reply.op == Op.ERROR:
            raise RequestError(reply)
        return reply

    def forget(self) -> None:
        """Stop waiting: a reply that comes later goes to the handlers like any message (answers do this at
        once; a caller that gives up on a request it never waited for calls it)."""
        self._bus._forget(self._envelope.id)


class Bus:
    """Subscribe handlers, publish envelopes, and make requests that wait for a reply."""

    def __init__(self, settings: BusSettings, *, error_route: ErrorRoute | None = None) -> None:
        self.settings = settings
        self.inbox = topics.inbox(settings.side, settings.module)
        self.connection = Connection(settings.connection, name=settings.module)
        self.counters: Counters = self.connection.counters
        self._error_route = error_route or self._reply_to_sender_inbox
        self._handlers: list[tuple[str, Handler]] = []
        self._raw_handlers: list[tuple[str, RawHandler]] = []
        self._takers: list[tuple[str, Taker]] = []
        self._batch_filters: list[str] = []
        self._routes: dict[str, _Route] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._closed = False
        self._work: queue.Queue[tuple[Incoming, Envelope | list[Envelope] | EnvelopeError | None]
                                | Callable[[], None] | None] = (
            queue.Queue())
        self._worker = threading.Thread(target=self._work_loop, name=f"{settings.module}-handlers", daemon=True)
        self.connection.on_message(self._on_incoming)
        self.connection.subscribe(self.inbox)

    # -- wiring ----------------------------------------------------------------

    def handle(self, topic_filter: str, handler: Handler, qos: int = 1, *, subscribe: bool = True,
               batches: bool = False) -> None:
        """Run ``handler`` for every valid envelope on topics matching ``topic_filter``. With ``subscribe``
        False the caller subscribes to parts of the filter itself (``connection.subscribe``): one handler for
        many per-topic subscriptions, which come and go (a CloudHub replica's nodes). With ``batches``, a
        batch (schemas/batch.py) on those topics is checked whole, then its members go to the handlers one by
        one, in order, as if each had come alone; one bad member refuses the batch (an error to the sender's
        inbox, as for any invalid message), and nothing of it is handled."""
        self._handlers.append((topic_filter, handler))
        if batches:
            self._batch_filters.append(topic_filter)
        self._routes = {}
        if subscribe and topic_filter != self.inbox:
            self.connection.subscribe(topic_filter, qos)

    def handle_raw(self, topic_filter: str, handler: RawHandler, qos: int = 1) -> None:
        """Run ``handler`` for every message on topics matching ``topic_filter``, undecoded."""
        self._raw_handlers.append((topic_filter, handler))
        self._routes = {}
        self.connection.subscribe(topic_filter, qos)

    def take_raw(self, topic_filter: str, taker: Taker, qos: int = 1) -> None:
        """Give ``taker`` every message on topics matching ``topic_filter``, undecoded, on the network thread,
        and acknowledge it as soon as ``taker`` returns. For a handler that only takes a message in (queues it
        for a thread of its own) and publishes nothing: it waits for no handler before it, and the broker's
        window of unacknowledged messages to this component does not fill while the handler thread is busy
        (EventBus's device requests behind its answers: half its network thread's time idle, under load)."""
        self._takers.append((topic_filter, taker))
        self._routes = {}
        self.connection.subscribe(topic_filter, qos)

    def on_session_lost(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the handler thread, after the messages already received, whenever the broker
        turns out to have lost this component's session (see ``Connection.on_session_lost``)."""
        self.connection.on_session_lost(lambda: self.call_soon(callback))

    def start(self) -> Bus:
        self._worker.start()
        self.connection.start()
        return self

    def close(self, drain_timeout: float = 5.0) -> bool:
        """Finish queued messages, wait for in-flight publishes, disconnect. True when nothing was cut off.

        Requests still waiting for a reply end at once (BusClosed): a thread waiting out a query's timeout would
        otherwise hold the process up to that long after it stopped (Python waits for its worker threads)."""
        with self._waiters_lock:
            self._closed = True
            for waiter in self._waiters.values():
                waiter.event.set()
        self._work.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=drain_timeout)
        return self.connection.close(drain_timeout)

    # -- sending ---------------------------------------------------------------

    def envelope(self, group: Group, op: Op, **fields: object) -> Envelope:
        """A new envelope from this module, for this module's node unless ``node`` is given."""
        fields.setdefault("node", self.settings.node)
        return Envelope(src=self.settings.module, group=group, op=op, **fields)  # type: ignore[arg-type]

    def publish(self, topic: str, envelope: Envelope, *, retain: bool = False, timeout: float | None = None,
                qos: int = 1) -> bool:
        """False: a QoS 0 message dropped, since the connection is down (Connection.publish)."""
        return self.connection.publish(topic, envelope.encode(self.settings.max_size), qos=qos, retain=retain,
                                       timeout=timeout)

    def send(self, sends: Iterable[Send | RawSend]) -> None:
        """Publish a handler's messages, in order, written together (``Connection.corked``)."""
        with self.connection.corked():
            for item in sends:
                if isinstance(item, RawSend):
                    self.connection.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
                else:
                    self.publish(item.topic, item.envelope, qos=item.qos)

    def request(self, topic: str, envelope: Envelope, timeout: float = 10.0,
                resend_after: float | None = None) -> Envelope:
        """Publish and wait for the envelope whose ``parent`` is this one's id.

        Raises RequestTimeout when none comes in time and RequestError when the answer is ``error``.
        """
        return self.ask(topic, envelope, timeout, resend_after).answer()

    def ask(self, topic: str, envelope: Envelope, timeout: float = 10.0,
            resend_after: float | None = None) -> Asked:
        """Publish a request now and return at once; :meth:`Asked.answer` waits for its reply. Several asked
        together wait out one round trip, not one each (a resync lists every kind of a node's store at once).

        ``resend_after``: publish the same request (the same id) once more if no reply has come that long after
        asking, still waiting for either until ``timeout``. For a request that is safe to answer twice (a
        listing) and whose first copy is the one most often lost: a second request under a new id would give
        up on the first one's answer, which, under load, is often on its way when the second is sent."""
        waiter = _Waiter()
        closed = BusClosed(f"no reply to {envelope.op.value} {envelope.res or ''} on {topic}: "
                           f"{self.settings.module} is stopping")
        with self._waiters_lock:
            if self._closed:
                raise closed
            self._waiters[envelope.id] = waiter
        now = time.monotonic()
        asked = Asked(self, topic, envelope, waiter, now + timeout, timeout, closed,
                      math.inf if resend_after is None else now + resend_after)
        try:
            self.publish(topic, envelope, timeout=timeout)
        except BaseException:
            asked.forget()
            raise
        return asked

    def _forget(self, envelope_id: str) -> None:
        with self._waiters_lock:
            self._waiters.pop(envelope_id, None)

    # -- receiving ---------------------------------------------------------------

    def _route(self, topic: str) -> _Route:
        # Taken on the network thread and the handler thread, while ``handle`` may add a filter on another:
        # a route worked out from the filters before the addition goes into the dict that the addition replaced.
        routes = self._routes
        route = routes.get(topic)
        if route is None:
            if len(routes) >= ROUTES_KEPT:
                routes.clear()
            route = routes[topic] = _Route(
                tuple(h for f, h in self._raw_handlers if topics.matches(f, topic)),
                tuple(h for f, h in self._handlers if topics.matches(f, topic)),
                any(topics.matches(f, topic) for f in self._batch_filters),
                tuple(t for f, t in self._takers if topics.matches(f, topic)))
        return route

    def _on_incoming(self, incoming: Incoming) -> None:
        """Network thread: decode, hand replies to their waiting requests, queue the rest."""
        route = self._route(incoming.topic)
        if route.takers:
            for taker in route.takers:
                try:
                    taker(incoming.topic, incoming.payload)
                except Exception:
                    self.counters.inc("handler_errors")
                    log.exception("taker for %s failed on a %d-byte message", incoming.topic, len(incoming.payload))
            if not (route.raw or route.handlers):
                incoming.ack()
                return
        if route.raw:
            self._work.put((incoming, None))
            return
        try:
            envelope: Envelope | EnvelopeError = decode(incoming.payload, self.settings.max_size)
        except EnvelopeError as exc:
            envelope = exc
        if isinstance(envelope, Envelope) and envelope.op == Op.BATCH and route.batches:
            try:
                self._work.put((incoming, Batch.parse(envelope).members(self.settings.max_size)))
            except EnvelopeError as exc:
                self._work.put((incoming, exc))
            return
        if isinstance(envelope, Envelope) and envelope.parent is not None:
            with self._waiters_lock:
                waiter = self._waiters.get(envelope.parent)
            if waiter is not None:
                waiter.reply = envelope
                waiter.event.set()
                incoming.ack()
                return
        self._work.put((incoming, envelope))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the handler thread, in turn with messages: for work a network thread must not do."""
        self._work.put(fn)

    def _work_loop(self) -> None:
        while (item := self._work.get()) is not None:
            if callable(item):
                try:
                    item()
                except Exception:
                    self.counters.inc("handler_errors")
                    log.exception("scheduled call failed")
                continue
            incoming, envelope = item
            try:
                if envelope is None:
                    self._dispatch_raw(incoming)
                elif isinstance(envelope, EnvelopeError):
                    self._reject(incoming, envelope)
                elif isinstance(envelope, list):
                    self.counters.inc("batches_received")
                    for member in envelope:
                        self._dispatch(incoming.topic, member)
                else:
                    self._dispatch(incoming.topic, envelope)
            finally:
                incoming.ack()

    def _dispatch(self, topic: str, envelope: Envelope) -> None:
        handlers = self._route(topic).handlers
        if not handlers:
            self.counters.inc("unhandled")
            log.debug("no handler for %s %s on %s", envelope.op.value, envelope.id, topic)
            return
        self.counters.inc("handled")
        for handler in handlers:
            try:
                self.send(handler(envelope, topic) or ())
            except Exception as exc:
                self.counters.inc("handler_errors")
                log.exception("handler for %s failed on envelope %s (%s %s from %s)", topic, envelope.id,
                              envelope.op.value, envelope.res or "-", envelope.src)
                if envelope.op == Op.QUERY:
                    self._publish_error(self._error_route(topic, Salvage(envelope.id, envelope.src, envelope.node)),
                                        envelope.error(self.settings.module, 500, f"{type(exc).__name__}: {exc}"))

    def _dispatch_raw(self, incoming: Incoming) -> None:
        for handler in self._route(incoming.topic).raw:
            try:
                self.send(handler(incoming.topic, incoming.payload) or ())
            except Exception:
                self.counters.inc("handler_errors")
                log.exception("handler for %s failed on a %d-byte message", incoming.topic, len(incoming.payload))

    def _reject(self, incoming: Incoming, error: EnvelopeError) -> None:
        self.counters.inc("invalid")
        # An unknown key is the sender's text: counting it by name would let a sender grow the counters (and the
        # metrics' label set) without bound, one name per message.
        known = error.field in FIELDS or error.field == "payload"
        self.counters.inc(f"invalid_{error.field if known else 'unknown_field'}")
        log.warning("dropped an invalid message on %s (%d bytes): %s", incoming.topic, len(incoming.payload), error)
        found = salvage(incoming.payload)
        if found is None:
            return
        reply = Envelope(node=found.node or self.settings.node, src=self.settings.module, group=Group.BUS,
                         op=Op.ERROR, parent=found.id, body=ErrorBody(400, str(error)).as_body())
        self._publish_error(self._error_route(incoming.topic, found), reply)

    def _publish_error(self, topic: str | None, reply: Envelope) -> None:
        if topic is None:
            return
        try:
            self.publish(topic, reply, timeout=5.0)
            self.counters.inc("error_replies")
        except Exception:
            log.exception("could not send the error reply for %s to %s", reply.parent, topic)

    def _reply_to_sender_inbox(self, _topic: str, found: Salvage) -> str | None:
        try:
            return topics.inbox(self.settings.side, found.src)
        except ValueError:
            return None
