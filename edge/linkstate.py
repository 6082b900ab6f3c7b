"""What every edge module knows about the cloud link: EdgeHub's retained ``cloud-link`` envelope."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from runtime.bus import Bus
from schemas import topics
from schemas.envelope import Envelope, Op, Send
from schemas.fields import BodyError
from schemas.link import LinkChange

log = logging.getLogger(__name__)


class LinkState:
    """Follows ``edgehive/edge/cloud-link``; ``connected`` is False until EdgeHub says otherwise."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._connected = threading.Event()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self.bus.handle(topics.cloud_link(), self._on_envelope)

    def _on_envelope(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        try:
            LinkChange.parse(envelope.body).check_op(envelope.op)
        except BodyError as exc:  # EdgeHub publishes nothing else here: counted and logged, nobody to answer
            self.bus.counters.inc("refused")
            log.warning("refused cloud-link news %s from %s: %s", envelope.id, envelope.src, exc)
            return None
        up = envelope.op == Op.CONNECTED
        if up == self.connected:
            return None
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        log.info("cloud link %s", "connected" if up else "disconnected")
        for listener in self._listeners:
            listener(up)
        return None
