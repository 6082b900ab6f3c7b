"""A CRL file a broker follows: re-read when it changes, so revoking a node needs no restart."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from runtime.pki import PkiError, crl_serials

log = logging.getLogger(__name__)


def certificate_identity(peercert: dict[str, Any] | None) -> tuple[str, str] | None:
    """(common name, serial) of a verified peer certificate, as ``SSLSocket.getpeercert()`` gives it."""
    if not peercert:
        return None
    cn = next((value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"), None)
    serial = str(peercert.get("serialNumber", "")).upper()
    return (str(cn), serial) if cn else None


class CrlFollower:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.serials: set[str] = set()
        self.version = 0  # counts the changes read, for followers that look at different times
        self._seen: tuple[float, int] | None = None
        self.changed()

    def changed(self) -> bool:
        """True (and the serials re-read) when the file differs from the last look."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return False
        mark = (stat.st_mtime, stat.st_size)
        if mark == self._seen:
            return False
        self._seen = mark
        try:
            self.serials = crl_serials(self.path.read_bytes())
        except (OSError, PkiError) as exc:
            log.error("cannot read the CRL %s (%s); keeping the previous one", self.path, exc)
            return False
        self.version += 1
        log.info("CRL %s: %d revoked certificates", self.path, len(self.serials))
        return True

    def load_into(self, context: ssl.SSLContext) -> None:
        """Add the CRL to a context's store; OpenSSL prefers the newest CRL of an issuer."""
        if self.path.exists():
            context.load_verify_locations(cafile=str(self.path))
