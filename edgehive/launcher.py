"""Start edgehive components as child processes and stop them together.

Every component is its own OS process; this keeps them as a group so that one
Ctrl-C (or the death of any one of them) brings the whole stack down cleanly
instead of leaving orphans behind.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One process of the stack: a name for humans and the Python module to run."""

    name: str
    module: str
    args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]


@dataclass
class Supervisor:
    """Runs components until a signal arrives or one of them exits."""

    components: list[Component]
    stop_timeout: float = 10.0
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stopping: bool = False

    def start(self) -> None:
        for component in self.components:
            proc = subprocess.Popen(component.argv())
            self._procs[component.name] = proc
            log.info("started %s (pid %d)", component.name, proc.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def wait(self) -> int:
        """Block until a signal or a child exit; return the exit status for the caller."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        status = 0
        while not self._stopping:
            for name, proc in self._procs.items():
                code = proc.poll()
                if code is not None:
                    log.error("%s exited with status %d; stopping the others", name, code)
                    status = 1
                    self._stopping = True
                    break
            else:
                time.sleep(0.2)  # poll children; signals interrupt the sleep
        self.stop()
        return status

    def stop(self) -> None:
        """SIGTERM every live child, then SIGKILL whatever outlives the timeout."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for name, proc in self._procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", name, self.stop_timeout)
                proc.kill()
                proc.wait()
