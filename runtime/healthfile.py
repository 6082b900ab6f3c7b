"""A process's health on disk, for container healthchecks.

A container engine can only ask "is it healthy?" by running a command inside the
container. Connecting to the broker from that command would cost a Python start-up,
a TCP connection and an MQTT session every ten seconds per container; reading a
small file the process keeps fresh costs a file read. The process writes its state
(``up`` when it has what it needs, ``down`` when it lost it) and rewrites it every
few seconds, so a hung or dead process shows up as a stale file.

Only the standard library here: ``python -m edgehive.health`` imports this module
and must start fast.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Probe = Callable[[], tuple[str, dict[str, Any]]]
"""Returns the current state and its detail; called at every refresh."""

ENV_VAR = "EDGEHIVE_HEALTH_FILE"
REFRESH_S = 2.0
MAX_AGE_S = 30.0
"""A file older than this means the process stopped refreshing it: hung or gone."""


class HealthFile:
    """The writer: one per process; does nothing when no path is configured (outside containers)."""

    def __init__(self, path: Path | None, component: str, refresh_s: float = REFRESH_S,
                 probe: Probe | None = None) -> None:
        self.path = path
        self.component = component
        self.refresh_s = refresh_s
        self.probe = probe
        self._state = "starting"
        self._detail: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write()
            self._thread = threading.Thread(target=self._refresh, name="health-file", daemon=True)
            self._thread.start()

    @classmethod
    def from_env(cls, component: str, probe: Probe | None = None) -> HealthFile:
        value = os.environ.get(ENV_VAR)
        return cls(Path(value) if value else None, component, probe=probe)

    @property
    def state(self) -> str:
        return self._state

    def set(self, state: str, **detail: Any) -> None:
        with self._lock:
            self._state, self._detail = state, detail
        self._write()

    def close(self, state: str = "stopped") -> None:
        self._stop.set()
        self.set(state)

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_s):
            if self.probe is not None:
                try:
                    state, detail = self.probe()
                except Exception as exc:  # a failing probe is an unhealthy process, not a dead refresher
                    state, detail = "down", {"reason": f"health probe failed: {exc}"}
                with self._lock:
                    if not self._stop.is_set():
                        self._state, self._detail = state, detail
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        with self._lock:
            record = {"component": self.component, "state": self._state, "pid": os.getpid(), "time": time.time(),
                      **self._detail}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(record))
            tmp.replace(self.path)
        except OSError:
            pass  # a full or read-only disk must not take the component down; the check then sees a stale file


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


def check(path: Path, max_age_s: float = MAX_AGE_S, now: float | None = None) -> Verdict:
    """Healthy when the file says ``up``, is fresh, and its writer is alive."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return Verdict(False, f"{path} does not exist: the process has not started (or {ENV_VAR} differs)")
    except (OSError, ValueError) as exc:
        return Verdict(False, f"{path} is unreadable: {exc}")
    if not isinstance(record, dict):
        return Verdict(False, f"{path} does not hold a JSON object")
    name, state = record.get("component", "?"), record.get("state")
    age = (time.time() if now is None else now) - float(record.get("time", 0))
    if age > max_age_s:
        return Verdict(False, f"{name}: last written {age:.0f} s ago (hung or stopped)")
    pid = record.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return Verdict(False, f"{name}: process {pid} is gone")
        except PermissionError:
            pass  # alive, run by another user
    if state != "up":
        extra = {k: v for k, v in record.items() if k not in ("component", "state", "pid", "time")}
        return Verdict(False, f"{name}: {state} {json.dumps(extra) if extra else ''}".rstrip())
    return Verdict(True, f"{name}: up ({age:.0f} s ago)")
