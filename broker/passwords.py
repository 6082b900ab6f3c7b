"""Password files in mosquitto's format, so that one file serves amqtt and mosquitto alike.

Each line is ``user:$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512 with the
salt and hash in base64, which is what ``mosquitto_passwd`` writes. NATS cannot
check those: it knows bcrypt only, so a file for a NATS cluster holds
``user:$2b$...`` lines (``edgehive passwd --bcrypt``), which amqtt checks too
(broker.bcrypt); mosquitto 2.0 cannot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from broker import bcrypt
from broker.errors import BrokerError

log = logging.getLogger(__name__)

ITERATIONS = 20_000
_SALT_BYTES = 12


class PasswordFileError(BrokerError, ValueError):
    """A password file line that cannot be read; the message names the file and line."""


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    if bcrypt.is_bcrypt(stored):
        return bcrypt.verify(password, stored)
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def read_password_file(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user or not (stored.startswith("$7$") or bcrypt.is_bcrypt(stored)):
            raise PasswordFileError(f"{path}:{number}: expected user:$7$... or user:$2b$... "
                                    "(write it with 'edgehive passwd')")
        users[user] = stored
    return users


def set_password(path: Path, user: str, password: str, *, use_bcrypt: bool = False) -> None:
    """Add or replace one user, atomically, keeping the file private to its owner.

    ``use_bcrypt``: the hash NATS can check (and amqtt; not mosquitto)."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ValueError(f"user name {user!r} may not be empty or contain ':' or spaces")
    users = read_password_file(path) if path.exists() else {}
    users[user] = bcrypt.hash_password(password) if use_bcrypt else hash_password(password)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{u}:{h}\n" for u, h in users.items())
    tmp.replace(path)


class PasswordFile:
    """A password file that is re-read when it changes, so users can be added without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._users: dict[str, str] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._users = read_password_file(self.path)
                self._mtime = mtime
                log.info("loaded %d users from %s", len(self._users), self.path)
        except (OSError, PasswordFileError) as exc:
            log.error("cannot read the password file, keeping the previous users: %s", exc)

    def check(self, user: str | None, password: str | None) -> bool:
        self._reload()
        stored = self._users.get(user) if user else None
        return stored is not None and verify_password(password or "", stored)
