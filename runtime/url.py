"""Broker addresses as URLs: ``mqtt://user:pass@host:port`` or ``mqtts://...`` for TLS.

A clustered broker (NATS) is one URL with its members' addresses in a row,
``mqtt://user:pass@host1:port1,host2:port2``: the credentials and the scheme are the
cluster's, and a client moves to the next member when its own dies.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    @classmethod
    def parse_list(cls, text: str) -> tuple[BrokerUrl, ...]:
        """Every member of ``mqtt://user:pass@host1:port1,host2:port2,...`` (one address is a list of one)."""
        scheme, sep, rest = text.partition("://")
        auth, at, hosts = rest.rpartition("@")
        if not sep or "," not in hosts:
            return (cls.parse(text),)
        return tuple(cls.parse(f"{scheme}://{auth}{at}{host}") for host in hosts.split(","))

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


def describe(urls: Sequence[BrokerUrl]) -> str:
    """A list of members without the password, for logs: ``mqtt://user@host1:port1,host2:port2``."""
    return str(urls[0]) + "".join(f",{url.host}:{url.port}" for url in urls[1:])
