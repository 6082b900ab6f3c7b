"""The embedded MQTT broker (amqtt), so that edgehive runs with nothing else installed.

Production deployments may use mosquitto instead; amqtt is the default because it
is pure Python and ships with the project.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listen:
    """A TCP address to accept MQTT clients on."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6), naming the problem on bad input."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen address {text!r} is not HOST:PORT (for example 127.0.0.1:1883)")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class BrokerSettings:
    """What the embedded broker needs to start; anonymous clients only, for now."""

    listen: tuple[Listen, ...] = (Listen("127.0.0.1", 1883),)


def amqtt_config(settings: BrokerSettings) -> dict[str, Any]:
    """Translate our settings into amqtt's configuration mapping."""
    listeners: dict[str, Any] = {}
    for i, address in enumerate(settings.listen):
        name = "default" if i == 0 else f"listener-{i}"
        listeners[name] = {"type": "tcp", "bind": str(address)}
    return {
        "listeners": listeners,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve(settings: BrokerSettings, stop: asyncio.Event) -> None:
    """Run the broker until ``stop`` is set, then shut it down cleanly."""
    broker = Broker(amqtt_config(settings))
    await broker.start()
    log.info("broker listening on %s", ", ".join(map(str, settings.listen)))
    await stop.wait()
    await broker.shutdown()
    log.info("broker stopped")


def run(settings: BrokerSettings) -> None:
    """Run the broker in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
