"""MetaManager as a process: the store and its logic on the edge bus."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from broker.bus import Bus, RequestError, RequestTimeout
from broker.runtime import ComponentSettings
from edge.linkstate import LinkState
from edge.metamanager.manager import MODULE, BadObject, MetaManager
from edge.metamanager.store import MetaStore
from schemas import topics
from schemas.envelope import Envelope, Group, Op, Send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetaManagerSettings(ComponentSettings):
    db: str = field(default="/var/lib/edgehive/metamanager.db", metadata={"help": "SQLite file of the store"})
    cloud_query_timeout: float = field(default=3.0, metadata={
        "help": "seconds to wait for the cloud when a module asks for an object this node does not hold"})


class MetaManagerComponent:
    def __init__(self, settings: MetaManagerSettings) -> None:
        self.settings = settings
        self.store = MetaStore(Path(settings.db))
        self.manager = MetaManager(self.store)
        self.link = LinkState()
        self.bus: Bus | None = None
        log.info("store %s holds %d objects", settings.db, self.store.count())

    def attach(self, bus: Bus) -> None:
        self.bus = bus
        bus.handle(topics.from_cloud(MODULE), lambda envelope, _t: self.manager.on_cloud(envelope))
        bus.handle(bus.inbox, self.on_local)
        self.link.attach(bus)

    def on_local(self, envelope: Envelope, _topic: str) -> Iterable[Send]:
        key = envelope.res
        if envelope.op == Op.QUERY and key is not None and self.link.connected and self.manager.lookup(key) is None:
            self._ask_cloud(envelope)
        return self.manager.on_local(envelope)

    def _ask_cloud(self, request: Envelope) -> None:
        """An object the node does not hold yet: ask the cloud once, and keep the answer."""
        assert self.bus is not None
        assert request.res is not None
        query = Envelope(node=self.settings.node, src=MODULE, group=Group.META, op=Op.QUERY, res=request.res)
        try:
            reply = self.bus.request(topics.to_cloud(), query, timeout=self.settings.cloud_query_timeout)
            self.manager.remember(request.res, reply.rv, reply.body)
        except (RequestTimeout, RequestError, BadObject) as exc:
            log.info("the cloud did not provide %s: %s", request.res, exc)

    def close(self) -> None:
        self.store.close()
