"""A container's termination message, as kubelet gives it: a file of its own, bind-mounted at the container's
terminationMessagePath, read into ``state.terminated.message`` once the container has ended.

Each container (each attempt: a restarted container writes a file of its own, so a last state keeps its
message) gets ``<pod dir>/termination/<container>_<attempt>``, removed with the pod's directory. The file
is capped at MESSAGE_LIMIT bytes, its end kept, as kubelet reads it. With FallbackToLogsOnError, a container
that failed and wrote nothing gets the end of its log instead: kubelet's last LOG_LINES lines, at most
LOG_LIMIT bytes of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from edge.edged.podspec import ContainerPlan
from edge.edged.runtime import HostMount

MESSAGE_LIMIT = 4096
LOG_LINES = 80
LOG_LIMIT = 2048


class TerminationLogs:
    def __init__(self, pod_dir: Callable[[str], Path]) -> None:
        self.pod_dir = pod_dir

    def path(self, uid: str, container: str, attempt: int) -> Path:
        return self.pod_dir(uid) / "termination" / f"{container}_{attempt}"

    def mount(self, uid: str, container: ContainerPlan, attempt: int) -> HostMount:
        """An empty file for the container about to be created, and its mount at terminationMessagePath.

        World-writable: the container may run as any user, and the file is its alone."""
        path = self.path(uid, container.name, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        os.chmod(path, 0o666)
        return HostMount(str(path), container.termination_message_path, False)

    def message(self, uid: str, container: ContainerPlan, attempt: int, exit_code: int,
                logs: Callable[[int], bytes]) -> str:
        """What an ended container leaves as its message; ``logs(lines)`` gives the end of its log."""
        text = read_tail(self.path(uid, container.name, attempt), MESSAGE_LIMIT)
        if not text and exit_code != 0 and container.termination_message_policy == "FallbackToLogsOnError":
            return log_message(logs(LOG_LINES))
        return text


def read_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of the file (empty if there is none)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_message(log: bytes) -> str:
    """The last LOG_LINES lines of a log, cut at LOG_LIMIT bytes from their start (as kubelet's log read with
    a tail and a byte limit gives them)."""
    lines = log.splitlines(keepends=True)[-LOG_LINES:]
    return b"".join(lines)[:LOG_LIMIT].decode(errors="replace")
