"""A minimal component on the real runtime, for testing the runtime itself: it echoes ``user`` queries."""

from __future__ import annotations

from collections.abc import Iterable

from runtime.bus import Bus
from runtime.component import ComponentSettings, run_component
from schemas import topics
from schemas.envelope import Envelope, Group, Op, Send

MODULE = "echo"


class Echo:
    def __init__(self, settings: ComponentSettings, bus: Bus) -> None:
        self.side = topics.Side.EDGE
        self.bus = bus

    def start(self) -> None:
        self.bus.handle(self.bus.inbox, self.on_message)

    def on_message(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        if envelope.group != Group.USER or envelope.op != Op.QUERY:
            return None
        if envelope.body == "raise":
            raise RuntimeError("asked to fail")
        return [Send(topics.inbox(self.side, envelope.src), envelope.reply(MODULE, {"echo": envelope.body}))]

    def close(self) -> None:
        pass


if __name__ == "__main__":
    raise SystemExit(run_component(MODULE, topics.Side.EDGE, ComponentSettings, Echo))
