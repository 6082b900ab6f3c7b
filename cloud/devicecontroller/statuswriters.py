"""The threads that write reported device status to the API server, and answer the reports once written.

One synchronous API call per report on the bus's single handler thread made reports from many devices queue
behind each other (``edgehive bench mapper``: register to status p50 10.9 s, p99 28.1 s). Here the handler
only queues a report (coalescer.py: a report for a device whose write still waits joins it), and a few
writer threads make the writes, each device by one writer at a time.

A report is answered (acknowledged to its node, which then drops it from its outbox) only once a write carrying
it succeeded, as before: what a node saw acknowledged is in the API server. What the API server refuses for good
(a 404: the Device, or the DeviceStatus's CRD, is gone; a 403 or 422) is answered with that error, as before;
what may succeed later (TRANSIENT: no connection, 409, 429, 5xx) is tried again after a backoff, where before
it was left unanswered for the node to send again after its resend time (it still does: the resend joins the
waiting write).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cloud.devicecontroller.coalescer import Coalescer, Key, Write
from cloud.devicecontroller.statusobject import StatusObject
from cloud.kube import KubeError
from runtime import hoptrace
from schemas.envelope import Envelope, Send

log = logging.getLogger(__name__)

TRANSIENT = frozenset({0, 409, 429, 500, 502, 503, 504})
"""API answers worth trying again (0: no answer at all)."""


@dataclass(frozen=True)
class Ack:
    """A report waiting for its write: the ``answer`` it gets once the write succeeded (ok, or which of its
    values were refused), and the report itself, to answer with an error instead."""

    report: Envelope
    answer: Envelope


class StatusWriters:
    """``workers`` threads draining a Coalescer of status writes into ``status_object``; ``send`` publishes the
    answers, each made by ``reply`` (the controller's, which routes it through CloudHub and counts refusals);
    ``module`` is the ``src`` of the error answers made here."""

    def __init__(self, status_object: StatusObject, send: Callable[[Iterable[Send]], None],
                 reply: Callable[[Envelope], Send], workers: int, *, module: str,
                 coalescer: Coalescer[Ack] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"status_writers must be at least 1, not {workers}")
        self.status_object = status_object
        self.send = send
        self.reply = reply
        self.module = module
        self.pending: Coalescer[Ack] = coalescer if coalescer is not None else Coalescer()
        self._threads = [threading.Thread(target=self._loop, name=f"status-writer-{n}", daemon=True)
                         for n in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the writes being made; what still waits was not acknowledged, so its nodes send it again."""
        self.pending.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def put(self, namespace: str, name: str, device: dict[str, Any], patch: dict[str, Any], ack: Ack) -> bool:
        """Queue a report's status patch for ``device``; True when it joined a write already waiting."""
        return self.pending.put(Key(namespace, name, self.status_object.target), device, patch, ack)

    def _loop(self) -> None:
        while not self.pending.closed:
            write = self.pending.take(timeout=1.0)
            if write is None:
                continue
            try:
                self.write(write)
            except Exception:  # the answers could not be published: unanswered, the nodes send the reports again
                log.exception("answering the reports written to %s failed", write.key)

    def write(self, write: Write[Ack]) -> None:
        """Make one (possibly coalesced) status write, taken from ``pending``, and settle it there: answer every
        report it carries once it succeeded, answer the API server's error when it never will, else leave it to
        be tried again after a backoff."""
        try:
            self.status_object.write(write.device, write.patch)
        except KubeError as exc:
            if exc.status in TRANSIENT:
                delay = self.pending.failed(write)
                log.warning("status of %s not written yet (%s); trying again in %.1f s", write.key, exc, delay)
                return
            self.pending.dropped(write)
            if exc.status == 404:
                log.info("status of %s dropped: the Device is gone (%s)", write.key, exc.reason)
            else:
                log.warning("status of %s refused by the API server: %d %s", write.key, exc.status, exc.reason)
            self.send([self.reply(ack.report.error(self.module, exc.status, exc.reason)) for ack in write.acks])
            return
        except Exception:
            delay = self.pending.failed(write)
            log.exception("status of %s not written; trying again in %.1f s", write.key, delay)
            return
        self.pending.done(write)
        hoptrace.hop("dc_written", f"{write.key.namespace}/{write.key.name}")
        self.send([self.reply(ack.answer) for ack in write.acks])
