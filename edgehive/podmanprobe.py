"""Whether a podman API service still answers a call that takes its locks.

podman 4.3 can deadlock inside its service (two requests taking a pod's and a container's lock in opposite
orders): the socket still accepts and ``/_ping`` still answers, but every call that needs those locks waits
forever, and so does every ``podman`` command on the machine that needs them. Only the lock holder's death
frees them. The supervisor asks this probe, and restarts the service when it keeps failing (launcher.py),
as kubelet's liveness probe restarts a container that no longer answers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge.podmanclient.transport import PodmanError, call, parse_url, path_of

PODS_PATH = path_of("/pods/json")
"""Listing the pods takes each pod's lock and its containers' (to tell their states): what a deadlock blocks."""


def pods_answered(socket_path: Path, timeout_s: float) -> bool:
    """True when the service at ``socket_path`` lists its pods within ``timeout_s``."""
    try:
        call(parse_url(f"unix://{socket_path}"), "GET", PODS_PATH, timeout=timeout_s)
    except PodmanError:
        return False
    return True


def podman_alive(socket_path: Path, timeout_s: float = 20.0) -> Callable[[], bool]:
    return lambda: pods_answered(socket_path, timeout_s)
