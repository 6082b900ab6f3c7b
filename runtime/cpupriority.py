"""A process that serves best-effort traffic gives the CPU up first.

Streams (``kubectl logs``, exec, cp, port-forward) move as many bytes as they can, and on a small machine their
processes compete for the CPU with the ones that deliver resources and status. Linux keeps a nice value per
thread, and a new thread inherits its creator's: so every thread the process has is lowered, and whatever it
starts later is lowered with them. It applies only while some other process wants the CPU; an otherwise idle
machine gives a niced stream all of it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_NICE = 19
STREAM_NICE = 10
"""The stream processes' default: below every other component, above batch work at 19."""


def nice_field() -> Any:
    """The ``nice`` setting of a stream process (dataclass field; check it with check_nice)."""
    return field(default=STREAM_NICE, metadata={
        "help": f"CPU priority of this process, 0 (as the other components) to {MAX_NICE}: streams are best "
                "effort, and on a busy machine resource delivery goes first"})


def check_nice(value: int) -> None:
    if not 0 <= value <= MAX_NICE:
        raise ValueError(f"nice: {value} is not 0 (as the other components) to {MAX_NICE} (lowest priority)")


def _lower(tid: int, nice: int) -> OSError | None:
    """Thread ``tid`` to at least ``nice`` (never raised: that would need privileges); the error, if it failed."""
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:
        return exc
    return None


def lower_thread(nice: int) -> None:
    """The calling thread (and the threads it starts) to at least ``nice``; the rest of the process keeps its
    priority: the bridge's stream side, beside its resource side."""
    check_nice(nice)
    tid = threading.get_native_id()
    if (failed := _lower(tid, nice)) is not None:
        log.warning("thread %d kept its priority: %s", tid, failed)


def lower_priority(nice: int) -> None:
    """Every thread of this process to at least ``nice``."""
    check_nice(nice)
    if nice == 0:
        return
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        if (failed := _lower(tid, nice)) is not None:  # a thread that ended meanwhile
            log.debug("thread %d kept its priority: %s", tid, failed)
