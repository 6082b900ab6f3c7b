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
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cloud.cloudhub.routing import CloudRouter, Routed
from runtime.bus import Bus
from runtime.component import ComponentSettings
from schemas import topics
from schemas.envelope import Envelope, Send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloudHubSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    keepalive_timeout_s: float = field(default=40.0, metadata={"help": "silence after which a node is gone"})
    window_per_node: int = field(default=100, metadata={"help": "unacknowledged objects in flight per node"})


class CloudHub:
    def __init__(self, settings: CloudHubSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.router = CloudRouter(bus.counters, window_per_node=settings.window_per_node,
                                  keepalive_timeout_s=settings.keepalive_timeout_s)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send_loop, name="sender", daemon=True),
                         threading.Thread(target=self._session_loop, name="sessions", daemon=True)]

    def start(self) -> None:
        self.bus.handle(topics.all_links(topics.Direction.UP), self.on_up)
        self.bus.handle(self.bus.inbox, self.on_module)
        self.bus.on_session_lost(self.announce_all)
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def on_up(self, envelope: Envelope, topic: str) -> Iterable[Send] | None:
        with self._lock:
            routed = self.router.from_node(envelope, topic, time.monotonic())
        return self._carry_out(routed)

    def on_module(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        with self._lock:
            routed = self.router.from_module(envelope, time.monotonic())
        return self._carry_out(routed)

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
            self.bus.call_soon(partial(self.bus.publish, send.topic, send.envelope, retain=True))
        if routed.wake:
            self._wake.set()
        return routed.sends

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            with self._lock:
                work = self.router.due(time.monotonic())
            for node, envelopes in work:
                for envelope in envelopes:
                    try:
                        self.bus.publish(topics.link_down(node), envelope, timeout=10)
                    except Exception:
                        log.warning("could not hand %s for %s to the broker", envelope.id, node, exc_info=True)
                        break
                    with self._lock:
                        self.router.sent(node, envelope, time.monotonic())

    def _session_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                routed = self.router.expire(time.monotonic())
            self._carry_out(routed)

    def report(self) -> dict[str, Any]:
        """Every node's link, for hub/query answers (edgehive status) and metrics."""
        with self._lock:
            return self.router.report(time.monotonic(), time.time())
