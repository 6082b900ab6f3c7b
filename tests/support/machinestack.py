"""One whole ``edgehive up`` stack on the machine's podman at a time, across pytest workers.

Two stacks side by side (test_edgehive_up and test_edgehive_up_native in the two workers) both ran their
deployment, and neither's ``kubectl top pod`` listed its pod within 60 s ("metrics not available yet"), in two
runs of two; each passes alone. Until that is understood, the tests that bring up such a stack take this lock."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = Path("/tmp/edgehive-tests-machine-stack.lock")


@contextmanager
def machine_stack() -> Iterator[None]:
    """Held while a test runs an ``edgehive up`` stack on the machine's podman (blocks while another does)."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
