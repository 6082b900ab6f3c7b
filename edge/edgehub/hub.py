"""EdgeHub: the edge end of the link, as a process.

The decisions (where each envelope goes, what enters the outbox, what the link's coming
and going means) are in routing.py; this module runs them: the bus's handler thread for
what arrives, a sender thread that sends the outbox in order with a bounded window of
unacknowledged entries (window.py; packed into batches for a cloud that takes them) and
resends the stale ones, and a keepalive thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edgehub.outbox import MAX_EVENTS, Entry, Outbox
from edge.edgehub.routing import EdgeRouter, Routed
from edge.edgehub.window import Outgoing, Window, pack_entries
from edge.storage import DiskGuard, StoreSettings
from runtime import hoptrace
from runtime.bus import Bus
from schemas import topics
from schemas.batch import MAX_MEMBERS
from schemas.envelope import Envelope, RawSend, Send

log = logging.getLogger(__name__)


BRIDGES = ("python", "native")
"""What carries the link: one of them only, never both. A retained ``1`` left on the edge broker from native days
would race the Python bridge's envelope, so each mode follows its own topic alone."""
HELLO_REPEAT_S = 10.0
"""Native mode: how long after the link comes up EdgeHub says hello once more (broker/bridge.py, HELLO_REPEAT_S,
says why: a NATS replica can miss mosquitto's single ``1`` per connect)."""


@dataclass(frozen=True)
class EdgeHubSettings(StoreSettings):
    outbox: str = field(default="/var/lib/edgehive/outbox.db", metadata={"help": "SQLite file of the outbox"})
    outbox_max_bytes: int = field(default=64 * 1024 * 1024, metadata={"help": "cap of the outbox on disk"})
    outbox_max_events: int = field(default=MAX_EVENTS, metadata={
        "help": "Kubernetes Events kept while the cloud is away; past it the oldest Normal ones go first"})
    keepalive_s: float = field(default=15.0, metadata={"help": "seconds between keepalives to the cloud"})
    resend_s: float = field(default=10.0, metadata={"help": "seconds before an unacknowledged entry is sent again"})
    # An entry is answered once the cloud has applied it (a status written to the API), so the window bounds the
    # rate at window / round trip: 50 let through about 70 statuses/s at the 0.7 s round trip of a loaded cloud,
    # under the 100/s of one node's 100 Modbus devices. Entries are small; CloudHub holds no per-entry state.
    upstream_window: int = field(default=200, metadata={"help": "outbox entries in flight at once"})
    link_batches: bool = field(default=True, metadata={
        "help": "batches on the link: take batches of objects from the cloud (one message for many, answered "
                "with one) and send the outbox up in batches to a cloud that says it takes them; off, one message "
                "per object both ways, as with a node of the previous version"})
    bridge: str = field(default="python", metadata={
        "help": "what carries the link to the cloud: python (broker/bridge.py, a process that says the link's state "
                "in an envelope on the link-state topic) or native (the edge mosquitto's own bridge, which says 1 or "
                "0 on the node's hello topic; see broker/nativebridge.py)"})
    upstream_batch_members: int = field(default=100, metadata={
        "help": "most outbox entries packed into one message up the link (1: one message per entry). Only what "
                "the window lets go at once is packed; nothing waits for a batch to fill"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.upstream_window < 1:
            raise ValueError(f"upstream_window must be at least 1, not {self.upstream_window}")
        if self.resend_s <= 0:
            raise ValueError(f"resend_s must be positive, not {self.resend_s}")
        if self.bridge not in BRIDGES:
            raise ValueError(f"bridge must be one of {', '.join(BRIDGES)}, not {self.bridge!r}")
        if not 1 <= self.upstream_batch_members <= MAX_MEMBERS:
            raise ValueError(f"upstream_batch_members must be 1 to {MAX_MEMBERS}, not {self.upstream_batch_members}")


class EdgeHub:
    def __init__(self, settings: EdgeHubSettings, bus: Bus) -> None:
        self.settings = settings
        self.node = settings.node
        self.bus = bus
        self.outbox = Outbox(Path(settings.outbox), settings.outbox_max_bytes, settings.outbox_max_events)
        self.router = EdgeRouter(settings.node, self.outbox, DiskGuard(Path(settings.outbox),
                                                                       settings.disk_reserve_bytes),
                                 bus.counters, settings.max_envelope_size,
                                 batch_bytes=settings.max_envelope_size if settings.link_batches else None,
                                 window=Window(settings.upstream_window, settings.resend_s),
                                 grant_s=2 * settings.keepalive_s + settings.resend_s)
        self._wake = threading.Condition()  # guards the router's window and link state, and _dirty
        self._stop = threading.Event()
        self._dirty = True
        self._links = 0
        """Native mode: how many times the link changed, so that a hello repeat is for the link still up."""
        self.hello_repeat_s = HELLO_REPEAT_S
        self._threads = [threading.Thread(target=self._sender, name="outbox-sender", daemon=True),
                         threading.Thread(target=self._keepalive, name="keepalive", daemon=True)]
        log.info("outbox %s holds %d entries (%d bytes)", settings.outbox, self.outbox.count(),
                 self.outbox.size_bytes)

    def start(self) -> None:
        self.bus.handle(topics.link_down(self.node), self.on_down)
        self.bus.handle(topics.to_cloud(), self.on_upstream)
        if self.settings.bridge == "native":
            self.bus.handle_raw(topics.link_hello(self.node), self.on_native_link)
        else:
            self.bus.handle(topics.link_state(self.node), self.on_link_state)
        self.bus.call_soon(self._starting)
        for thread in self._threads:
            thread.start()

    def report(self) -> dict[str, Any]:
        return self.router.report()

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self.outbox.close()

    # -- the handlers ----------------------------------------------------------------------

    def on_down(self, envelope: Envelope, _topic: str) -> Iterable[Send | RawSend] | None:
        with self._wake:  # an answer settles a slot of the window the sender thread reads
            routed = self.router.from_cloud(envelope, time.monotonic())
        return self._carry_out(routed)

    def on_upstream(self, envelope: Envelope, _topic: str) -> Iterable[Send | RawSend] | None:
        return self._carry_out(self.router.from_module(envelope, time.monotonic()))

    def on_link_state(self, envelope: Envelope, _topic: str) -> Iterable[Send | RawSend] | None:
        with self._wake:  # the link and what the sender has in flight change together
            routed = self.router.from_bridge(envelope)
        return self._carry_out(routed)

    def on_native_link(self, _topic: str, payload: bytes) -> Iterable[Send | RawSend] | None:
        with self._wake:  # as on_link_state
            routed = self.router.from_native(payload)
            if routed.link is not None:
                self._links += 1
            link = self._links
        if routed.link:
            timer = threading.Timer(self.hello_repeat_s, self._repeat_hello, args=(link,))
            timer.daemon = True
            timer.start()
        return self._carry_out(routed)

    def _repeat_hello(self, link: int) -> None:
        """Native mode: the node's hello again, retained on the edge broker, which the bridge carries out to the
        cloud's hello topic; only if the link that came up is still the one up."""
        with self._wake:
            if self._stop.is_set() or not self.router.link_up or link != self._links:
                return
        try:
            self.bus.connection.publish(topics.hello_repeat(), topics.NATIVE_UP, retain=True, timeout=5)
        except Exception:
            log.warning("the hello repeat was not published", exc_info=True)

    def _starting(self) -> None:
        with self._wake:
            routed = self.router.starting()
        self.bus.send(self._carry_out(routed))

    def _carry_out(self, routed: Routed) -> list[Send | RawSend]:
        if routed.acked is not None or routed.queued or routed.link is not None:
            with self._wake:  # the router settled the window itself; the sender has room or work
                self._dirty = True
                self._wake.notify_all()
        for send in routed.announce:
            self.bus.publish(send.topic, send.envelope, retain=True)
        return routed.sends

    # -- the threads -----------------------------------------------------------------------

    def _keepalive(self) -> None:
        while not self._stop.wait(self.settings.keepalive_s):
            with self._wake:  # the router remembers the keepalive's id, which the handler thread looks up
                send = self.router.keepalive()
            if send is None:
                continue
            try:
                self.bus.publish(send.topic, send.envelope, timeout=5)
            except Exception:
                log.warning("keepalive not sent", exc_info=True)

    def _sender(self) -> None:
        """Send outbox entries in order, at most ``upstream_window`` unacknowledged, packed into batches when the
        cloud takes them; resend the stale ones, each alone."""
        window = self.router.window
        while not self._stop.is_set():
            with self._wake:
                if not self._dirty:
                    self._wake.wait(timeout=1.0)
                self._dirty = False
                if not self.router.link_up:
                    continue
                now = time.monotonic()
                hold = self.router.answer_wait(now)
                if hold > 0:  # the cloud is about to say whether it takes batches: the first entries wait for it
                    self._wake.wait(timeout=hold)
                    self._dirty = True
                    continue
                stale = window.stale(now)
                room = window.room()
                after = window.sent_seq
                batch_bytes = self.router.upstream_batch_bytes(now)
            for msg_id in stale:
                entry = self.outbox.get(msg_id)
                with self._wake:
                    if entry is None:
                        window.forget(msg_id)
                        continue
                    window.resent(msg_id, time.monotonic())
                self._send(entry.payload)
                self.bus.counters.inc("upstream_resent")
            if room <= 0:
                continue
            entries = self.outbox.after(after, room)
            if len(entries) == room:
                self._poke()  # there may be more behind these once acks make room
            for item in self._packed(entries, batch_bytes):
                with self._wake:
                    if not self.router.link_up:
                        break
                    window.sent([item], time.monotonic())
                self._send(item.payload)
                for entry in item.entries:
                    if entry.key is not None:
                        hoptrace.hop("edgehub_sent", entry.key)
                self.bus.counters.inc("upstream_sent", len(item.entries))
                if item.batch_id is not None:
                    self.bus.counters.inc("upstream_batches")

    def _packed(self, entries: list[Entry], batch_bytes: int | None) -> list[Outgoing]:
        """Packing runs outside the lock. Should it fail on something unforeseen, the entries go one per message
        rather than the sender thread ending (which would stop everything going up)."""
        try:
            return pack_entries(self.node, entries, batch_bytes, self.settings.upstream_batch_members)
        except Exception:
            self.bus.counters.inc("batch_errors")
            log.exception("could not pack %d outbox entries; sending them one by one", len(entries))
            return [Outgoing(entry.payload, (entry,)) for entry in entries]

    def _poke(self) -> None:
        with self._wake:
            self._dirty = True
            self._wake.notify_all()

    def _send(self, payload: bytes) -> None:
        try:
            self.bus.connection.publish(topics.link_up(self.node), payload, timeout=10)
        except Exception:
            log.warning("could not hand an outbox entry to the broker; it stays in the outbox", exc_info=True)
