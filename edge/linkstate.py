"""What every edge module knows about the cloud link: EdgeHub's retained ``cloud-link`` envelope."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from runtime.bus import Bus
from schemas import topics
from schemas.envelope import Envelope, Op, Send

log = logging.getLogger(__name__)


class LinkState:
    """Follows ``edgehive/edge/cloud-link``; ``connected`` is False until EdgeHub says otherwise."""

    def __init__(self) -> None:
        self._connected = threading.Event()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def attach(self, bus: Bus) -> None:
        bus.handle(topics.cloud_link(), self._on_envelope)

    def _on_envelope(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
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
