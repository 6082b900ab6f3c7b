"""Sends collected values to their properties' push targets (edge/mappers/push.py), off the polling threads.

A device's polling thread hands each value over and goes on at once: an MQTT publish takes a slot in the
broker connection's window (runtime.connection: QoS 1 and 2 wait there while the broker is away, QoS 0 is
dropped) and never waits for one; an HTTP POST goes into a bounded queue that one sender thread empties.
A value that finds no room is dropped and counted: a push target that is away must not hold up the device,
its reports to the edge, or memory. Each target's failures are logged once per reason (and its recovery
once), not at every value.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from edge.mappers.push import HttpPush, MqttPush, PushTarget
from runtime.connection import Connection, ConnectionSettings, PublishTimeout
from runtime.counters import Counters

log = logging.getLogger(__name__)

HTTP_QUEUE = 1000
"""HTTP pushes waiting for the sender thread at most; more are dropped (counted)."""
MQTT_WINDOW = 100
"""QoS 1/2 publishes per broker awaiting the broker's acknowledgement at most; more are dropped (counted)."""


@dataclass(frozen=True)
class Post:
    target: HttpPush
    body: bytes


class Pusher:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.counters = Counters()
        self._lock = threading.Lock()
        self._brokers: dict[str, Connection] = {}
        self._posts: queue.Queue[Post | None] = queue.Queue(maxsize=HTTP_QUEUE)
        self._failing: dict[str, str] = {}
        self._thread = threading.Thread(target=self._send_posts, name="push-http", daemon=True)
        self._thread.start()

    def push(self, target: PushTarget, prop: str, value: str, timestamp_ms: int) -> None:
        """Hand one collected value over; never blocks."""
        if isinstance(target, MqttPush):
            self._publish(target, value, timestamp_ms)
            return
        try:
            self._posts.put_nowait(Post(target, HttpPush.payload(prop, value, timestamp_ms)))
        except queue.Full:
            self._failed(target.url, f"{HTTP_QUEUE} pushes are waiting already; values are dropped")

    def close(self) -> None:
        self._posts.put(None)
        self._thread.join(timeout=10)
        with self._lock:
            brokers, self._brokers = list(self._brokers.values()), {}
        for connection in brokers:
            connection.close(drain_timeout=2.0)

    # -- MQTT -------------------------------------------------------------------------------------

    def _publish(self, target: MqttPush, value: str, timestamp_ms: int) -> None:
        where = f"{target.url}/{target.topic}"
        try:
            self._broker(target).publish(target.topic, target.payload(value, timestamp_ms), qos=target.qos,
                                         retain=target.retained, timeout=0)
        except PublishTimeout:
            self._failed(where, f"{MQTT_WINDOW} publishes unacknowledged; is the broker there? values are dropped")
            return
        self._pushed(where)

    def _broker(self, target: MqttPush) -> Connection:
        key = target.url.with_password()
        with self._lock:
            connection = self._brokers.get(key)
            if connection is None:
                connection = Connection(ConnectionSettings(url=target.url,
                                                           client_id=f"{self.client_id}-push-{len(self._brokers)}",
                                                           window=MQTT_WINDOW), name=f"push {target.url}").start()
                self._brokers[key] = connection
            return connection

    # -- HTTP -------------------------------------------------------------------------------------

    def _send_posts(self) -> None:
        while (post := self._posts.get()) is not None:
            request = urllib.request.Request(post.target.url, data=post.body, method="POST", headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            try:
                with urllib.request.urlopen(request, timeout=post.target.timeout_s) as answer:
                    answer.read()
            except urllib.error.HTTPError as exc:
                self._failed(post.target.url, f"answered {exc.code} {exc.reason}")
                continue
            except (urllib.error.URLError, OSError) as exc:
                self._failed(post.target.url, str(getattr(exc, "reason", exc)))
                continue
            self._pushed(post.target.url)

    # -- bookkeeping ------------------------------------------------------------------------------

    def _pushed(self, where: str) -> None:
        self.counters.inc("pushed")
        with self._lock:
            was = self._failing.pop(where, None)
        if was is not None:
            log.info("push to %s works again", where)

    def _failed(self, where: str, reason: str) -> None:
        self.counters.inc("push_dropped")
        with self._lock:
            told = self._failing.get(where) == reason
            self._failing[where] = reason
        if not told:
            log.warning("push to %s failed: %s", where, reason)
