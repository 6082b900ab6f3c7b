"""A child process that ends with its parent: the kernel's parent-death signal."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: if the supervisor is killed outright, the kernel sends us SIGTERM.

    Children run in their own session (so a terminal's Ctrl-C reaches only the supervisor);
    without this, a SIGKILLed supervisor would leave its whole stack running.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
