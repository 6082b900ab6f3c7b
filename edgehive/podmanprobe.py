"""Whether a podman API service still answers a call that takes its locks.

podman 4.3 can deadlock inside its service (two requests taking a pod's and a container's lock in opposite
orders): the socket still accepts and ``/_ping`` still answers, but every call that needs those locks waits
forever, and so does every ``podman`` command on the machine that needs them. Only the lock holder's death
frees them. The supervisor asks this probe, and restarts the service when it keeps failing (launcher.py),
as kubelet's liveness probe restarts a container that no longer answers.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from pathlib import Path

PODS_PATH = "/v4.0.0/libpod/pods/json"
"""Listing the pods takes each pod's lock and its containers' (to tell their states): what a deadlock blocks."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def pods_answered(socket_path: Path, timeout_s: float) -> bool:
    """True when the service at ``socket_path`` lists its pods within ``timeout_s``."""
    connection = _UnixConnection(socket_path, timeout_s)
    try:
        connection.request("GET", PODS_PATH)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def podman_alive(socket_path: Path, timeout_s: float = 20.0) -> Callable[[], bool]:
    return lambda: pods_answered(socket_path, timeout_s)
