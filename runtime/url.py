"""Broker addresses as URLs: ``mqtt://user:pass@host:port`` or ``mqtts://...`` for TLS."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> BrokerUrl:
        parts = urlsplit(text)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"broker URL {text!r} must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"broker URL {text!r} has no host (expected mqtt://HOST:PORT)")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError(f"broker URL {text!r} has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def with_password(self) -> str:
        """The full URL, password included: for handing to a child process, never for logs."""
        auth = ""
        if self.username:
            auth = quote(self.username, safe="") + (f":{quote(self.password, safe='')}" if self.password else "") + "@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"

    def __str__(self) -> str:
        """The URL without its password, for logs."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"BrokerUrl({self})"
