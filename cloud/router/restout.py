"""Uploads POSTed to the rules' REST targets: one bounded queue, retried with backoff, counted per Rule.

One sender thread takes the oldest message and POSTs it (header ``NodeName`` as KubeEdge sets it);
a connection error or an answer that is not 2xx is tried again after a jittered, doubling delay,
up to ``attempts`` times, then counted as failed with the last reason. Messages wait in order
behind a retried one: a target that is down does not see them out of order once it is back.
Past ``bound`` waiting messages, the oldest is dropped and counted as failed in its Rule's status,
with the reason, since a message that cannot wait must not silently vanish.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cloud.router.status import StatusBook
from cloud.router.table import RuleId
from runtime.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    rule: RuleId
    url: str
    node: str
    payload: bytes


Post = Callable[[Delivery, float], str | None]
"""POST one delivery within a timeout; None when the target took it, else why not."""


def http_post(delivery: Delivery, timeout_s: float) -> str | None:
    request = urllib.request.Request(delivery.url, data=delivery.payload, method="POST", headers={
        "NodeName": delivery.node, "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read(65536)
            return None  # urlopen raises HTTPError for anything but 2xx and followed redirects
    except urllib.error.HTTPError as exc:
        return f"{delivery.url} answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return f"{delivery.url} unreachable: {reason}"


class RestSender:
    def __init__(self, book: StatusBook, *, bound: int = 1000, attempts: int = 5, timeout_s: float = 10.0,
                 backoff: Callable[[], Backoff] = lambda: Backoff(0.5, 10.0), post: Post = http_post) -> None:
        self.book = book
        self.bound = bound
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._backoff = backoff
        self._post = post
        self._queue: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="rest-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def put(self, delivery: Delivery) -> None:
        with self._cond:
            self._queue.append(delivery)
            dropped = self._queue.popleft() if len(self._queue) > self.bound else None
            self._cond.notify()
        if dropped is not None:
            self.dropped += 1
            self.book.fail(dropped.rule, f"the router's queue of {self.bound} messages was full: the oldest, from "
                                         f"node {dropped.node} for {dropped.url}, was dropped")

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop)
                if self._stop:
                    return
                delivery = self._queue.popleft()  # in flight: no longer one of the ``bound`` waiting
            self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> None:
        backoff = self._backoff()
        why: str | None = None
        for attempt in range(1, self.attempts + 1):
            why = self._post(delivery, self.timeout_s)
            if why is None:
                self.book.success(delivery.rule)
                return
            log.info("POST for Rule %s/%s failed (attempt %d of %d): %s", *delivery.rule, attempt, self.attempts,
                     why)
            if attempt < self.attempts:
                with self._cond:  # a pause before the retry (or until close), not synchronisation
                    if self._cond.wait_for(lambda: self._stop, timeout=backoff.next()):
                        return
        self.book.fail(delivery.rule, f"gave up after {self.attempts} attempts: {why}")
