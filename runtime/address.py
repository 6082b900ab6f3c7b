"""The one parser of ``HOST:PORT`` addresses: listeners, the metrics endpoint, the join endpoint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    """A TCP address; ``[v6]:PORT`` for IPv6. An empty host (``:9464``) means every address where allowed."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, any_host: bool = False, what: str = "listen address") -> Address:
        """Parse ``HOST:PORT``, naming ``what`` and the problem on bad input.

        ``any_host`` accepts an empty host (bind every address), as ``--metrics-listen :9464`` does.
        """
        host, sep, port = text.rpartition(":")
        if not sep or (not host and not any_host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{what} {text!r} is not HOST:PORT (for example 127.0.0.1:{port_hint(what)})")
        return cls(host.strip("[]"), int(port))

    @property
    def bind_host(self) -> str:
        """The host to bind: every address for an empty host."""
        return self.host or "0.0.0.0"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def port_hint(what: str) -> int:
    return 9464 if "metrics" in what else 1883
