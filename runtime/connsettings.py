"""What an MQTT connection is given (broker, identity, TLS files, will, window) and what it hands out (a
received message with its acknowledgement): plain data, apart from ``runtime.connection`` so that settings
can be built and read without loading paho-mqtt."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.backoff import Backoff
from runtime.url import BrokerUrl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsSettings:
    """Files for an ``mqtts://`` connection; without ``ca_file`` the system's CAs are trusted."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class ClientIdentity:
    """The TLS context of an ``mqtts://`` connection, and its client certificate kept current.

    A node's certificate is rotated by writing new files (edgehive renew); the connection
    that is up keeps its session on the old, still valid certificate, and the next
    connection presents the new one: rotation without a moment offline.
    """

    def __init__(self, tls: TlsSettings | None) -> None:
        self.tls = tls or TlsSettings()
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls.ca_file)
        self._mark = self._files_mark()
        if self.tls.cert_file:
            self.context.load_cert_chain(self.tls.cert_file, self.tls.key_file)

    def _files_mark(self) -> tuple[float, ...]:
        paths = [p for p in (self.tls.cert_file, self.tls.key_file) if p]
        try:
            return tuple(os.stat(p).st_mtime for p in paths)
        except OSError:
            return ()

    def refresh(self, name: str) -> None:
        mark = self._files_mark()
        if not self.tls.cert_file or not mark or mark == self._mark:
            return
        try:
            self.context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        except (OSError, ssl.SSLError) as exc:  # half-written pair: keep the old one, try again next time
            log.warning("%s: the new client certificate is not usable yet (%s)", name, exc)
            return
        self._mark = mark
        log.info("%s: using the renewed client certificate %s", name, self.tls.cert_file)


@dataclass(frozen=True)
class Will:
    """What the broker publishes for us when we vanish without saying goodbye."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class ConnectionSettings:
    url: BrokerUrl
    client_id: str
    clean_start: bool = True
    """False keeps the session (subscriptions and queued QoS 1 messages) across reconnects."""
    keepalive: int = 30
    window: int = 100
    """Most QoS 1 publishes awaiting their PUBACK at once."""
    tls: TlsSettings | None = None
    will: Will | None = None
    backoff: Backoff = field(default_factory=Backoff)
    alternates: tuple[BrokerUrl, ...] = ()
    """The other members of a clustered broker (same credentials): when the member in use cannot be
    reached or drops the connection, the next one is tried, round the list. The session lives in the
    cluster, so it is found again on whichever member takes us."""
    nice: int = 0
    """CPU priority of the network thread (runtime/cpupriority.py): above 0 for best-effort traffic."""
    connack_timeout: float = 15.0
    """Seconds to wait for the broker's CONNACK once the connection is open; then the connection is dropped and
    tried again. paho alone waits a whole keepalive (30 s) per silent attempt, and the backoff doubles on top.
    Not shorter: NATS answers a CONNECT only after its JetStream calls for the session, each allowed seconds."""


@dataclass(frozen=True)
class Incoming:
    """A message as received. Call ``ack()`` once it has been dealt with (QoS 1)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    duplicate: bool
    _ack: Callable[[], None] = field(repr=False)

    def ack(self) -> None:
        self._ack()
