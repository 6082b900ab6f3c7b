"""Per-hop timestamps of device readings, for finding where a reading waits (``edgehive bench mapper``).

Off unless ``EDGEHIVE_HOP_TRACE`` names a directory: then each process appends ``hop<TAB>key<TAB>wall ns``
lines to ``<dir>/<pid>.hops`` (wall time, so that the lines of every process on the machine compare). Off, a
call is one global read and a return, so the hops stay in the product code for the next person who asks where a
reading went. The file is line-buffered: a process killed at the end of a bench has written what it traced.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TextIO

ENV_VAR = "EDGEHIVE_HOP_TRACE"



def _open() -> TextIO | None:
    where = os.environ.get(ENV_VAR)
    if not where:
        return None
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return (path / f"{os.getpid()}.hops").open("a", buffering=1)


class _Trace:
    """Whether this process traces, decided at its first hop rather than at import: an edge component forked from
    the fork server (edgehive/forkserver.py) imports this module before it has its own environment, and a forked
    child writes its own file, not its parent's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decided = False
        self.out: TextIO | None = None

    def file(self) -> TextIO | None:
        if not self.decided:
            with self.lock:
                if not self.decided:
                    self.out = _open()
                    self.decided = True
        return self.out

    def forget(self) -> None:
        self.__init__()  # type: ignore[misc]  # the same fresh state as at import, in the child


_trace = _Trace()
os.register_at_fork(after_in_child=_trace.forget)


def enabled() -> bool:
    return _trace.file() is not None


def hop(name: str, key: str, at_ns: int | None = None) -> None:
    """Say that ``key`` (a device's namespace/name, or more) passed hop ``name`` now (or at wall time ``at_ns``)."""
    out = _trace.file()
    if out is None:
        return
    line = f"{name}\t{key}\t{time.time_ns() if at_ns is None else at_ns}\n"
    with _trace.lock:
        out.write(line)
