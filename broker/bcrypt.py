"""bcrypt password hashes through the system's libcrypt (libxcrypt), for NATS.

NATS checks passwords only in plain text or as bcrypt, while our password files
hold mosquitto's PBKDF2 hashes; a NATS cluster's users therefore need bcrypt
hashes. libxcrypt, which every Debian system has, makes and checks them, so no
extra Python package is needed (Python's ``crypt`` module is deprecated).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hmac
import re
import threading

COST = 11
"""2^11 rounds: about 0.1 s per check here, as NATS's own tool chooses."""

_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_lock = threading.Lock()  # crypt() returns a static buffer


@functools.cache
def _libcrypt() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    return lib


def is_bcrypt(stored: str) -> bool:
    return _BCRYPT.fullmatch(stored) is not None


def _crypt(password: str, setting: bytes) -> str:
    with _lock:
        out = _libcrypt().crypt(password.encode(), setting)
    if not out or out.startswith(b"*"):
        raise ValueError("libcrypt refused to make a bcrypt hash")
    return bytes(out).decode()


def hash_password(password: str, cost: int = COST) -> str:
    with _lock:
        setting = _libcrypt().crypt_gensalt(b"$2b$", cost, None, 0)  # None: libcrypt draws the salt itself
    if not setting:
        raise ValueError("libcrypt cannot make a bcrypt salt")
    return _crypt(password, bytes(setting))


def verify(password: str, stored: str) -> bool:
    try:
        return hmac.compare_digest(_crypt(password, stored.encode()), stored)
    except ValueError:
        return False
