"""Keep a set of edgehive processes running: start them, restart the ones that die, stop them together.

Every component is its own OS process; this is the small supervisor behind
``edgehive up``. It restarts a crashed child with jittered backoff, shows a status
table whenever something changes, writes the same as JSON for scripts, and on
SIGINT or SIGTERM stops every child it started and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgehive.deathsig import die_with_parent
from edgehive.forked import ForkedProcess, ForkServer, module_of
from runtime.backoff import Backoff

log = logging.getLogger(__name__)

STABLE_AFTER = 30.0
"""A child that ran this long without dying has its restart backoff reset."""


@dataclass
class Child:
    """One supervised process: how to run it and how to tell that it is healthy."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    healthy: Callable[[], bool] = lambda: True
    alive: Callable[[], bool] | None = None
    """A liveness probe, for a process that can hang without dying: asked every ``alive_every_s`` once the
    child has run that long, and ``alive_failures`` failures in a row have it killed and restarted. It may
    block (it is asked on a thread of its own) but must bound its own wait."""
    alive_every_s: float = 10.0
    alive_failures: int = 3
    failed_probes: int = 0
    forked: bool = False
    """Started by the supervisor's fork server (a ``python -m`` component sharing its imports), if it has one."""
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    last_exit: int | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=15.0))

    def state(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            return "running"
        return "restarting" if self.restart_at is not None else "stopped"

    def row(self, now: float) -> dict[str, Any]:
        running = self.state() == "running"
        return {
            "name": self.name,
            "pid": self.proc.pid if running and self.proc is not None else None,
            "state": self.state(),
            "healthy": bool(running and _safe(self.healthy)),
            "restarts": self.restarts,
            "uptime_s": round(now - self.started_at, 1) if running else 0.0,
            "last_exit": self.last_exit,
        }


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:
        return False


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class Supervisor:
    def __init__(self, children: list[Child], *, status_file: Path | None = None, out: IO[str] | None = None,
                 stop_timeout: float = 10.0, log_dir: Path | None = None,
                 before_stop: Callable[[], None] | None = None, forkserver: ForkServer | None = None) -> None:
        self.children = children
        self.forkserver = forkserver
        self.status_file = status_file
        self.out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self.log_dir = log_dir
        self.before_stop = before_stop
        self._stop = threading.Event()
        self._shown: list[tuple[str, str, bool, int]] = []
        self._liveness = threading.Thread(target=self._liveness_loop, name="liveness", daemon=True)

    def _spawn(self, child: Child) -> None:
        env = {**os.environ, **child.env}
        if child.forked and self.forkserver is not None and module_of(child.argv) is not None:
            log_path = self.log_dir / f"{child.name}.log" if self.log_dir is not None else None
            child.proc = self.forkserver.spawn(child.argv, env, log_path)
            child.started_at = time.monotonic()
            child.restart_at = None
            child.failed_probes = 0
            log.info("forked %s (pid %d)", child.name, child.proc.pid)
            return
        output = None
        if self.log_dir is not None:
            output = (self.log_dir / f"{child.name}.log").open("ab")
        # Its own session: a Ctrl-C in the terminal reaches the supervisor only, which then stops
        # the children in order instead of racing them.
        child.proc = subprocess.Popen(child.argv, env=env, stdout=output, stderr=subprocess.STDOUT if output else None,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl, no locks
        if output is not None:
            output.close()  # the child holds its own descriptor
        child.started_at = time.monotonic()
        child.restart_at = None
        child.failed_probes = 0
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("received %s: stopping every child", signal.Signals(signum).name)
        self._stop.set()

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM; returns 0 after a clean stop."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            self._spawn(child)
        if any(child.alive is not None for child in self.children):
            self._liveness.start()
        try:
            while not self._stop.wait(0.2):
                self._tick()
        finally:
            self.stop()
        return 0

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None and child.restart_at is None:
                child.last_exit = proc.returncode
                if now - child.started_at > STABLE_AFTER:
                    child.backoff.reset()
                delay = child.backoff.next()
                child.restart_at = now + delay
                log.warning("%s exited with status %s; restarting in %.1f s", child.name, proc.returncode, delay)
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
        self._show(now)

    def _liveness_loop(self) -> None:
        """Ask each probed child in turn; a probe bounds its own wait, so one that hangs delays the others by
        at most that much."""
        step = min(c.alive_every_s for c in self.children if c.alive is not None)
        while not self._stop.wait(step):
            for child in self.children:
                if child.alive is not None and not self._stop.is_set():
                    self.probe(child, time.monotonic())

    def probe(self, child: Child, now: float) -> None:
        """One liveness check of ``child``: killed after ``alive_failures`` failures in a row (``_tick`` then
        restarts it as it would a crash, with the same backoff)."""
        proc = child.proc
        if (child.alive is None or proc is None or proc.poll() is not None
                or now - child.started_at < child.alive_every_s):
            return
        if _safe(child.alive):
            child.failed_probes = 0
            return
        child.failed_probes += 1
        log.warning("%s failed its liveness probe (%d of %d in a row)", child.name, child.failed_probes,
                    child.alive_failures)
        if child.failed_probes >= child.alive_failures and child.proc is proc and proc.poll() is None:
            log.warning("%s is alive but no longer answers: killing it to restart it", child.name)
            proc.kill()

    def rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [child.row(now) for child in self.children]

    def _show(self, now: float) -> None:
        rows = [child.row(now) for child in self.children]
        key = [(r["name"], r["state"], r["healthy"], r["restarts"]) for r in rows]
        if key == self._shown:
            return
        self._shown = key
        if self.status_file is not None:
            tmp = self.status_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"ts": time.time(), "children": rows}, indent=1))
            tmp.replace(self.status_file)
        print(format_table(rows), file=self.out, flush=True)

    def stop(self) -> None:
        """SIGTERM every live child, then SIGKILL whatever outlives the timeout."""
        if self.before_stop is not None:
            self.before_stop()
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in live:
            assert child.proc is not None
            child.proc.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for child in live:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", child.name, self.stop_timeout)
                child.proc.kill()
                child.proc.wait()
        for child in self.children:
            child.restart_at = None
        if self.forkserver is not None:
            self.forkserver.close()
        if self.status_file is not None:
            self._shown = []
            self._show(time.monotonic())


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'COMPONENT':<22} {'PID':>7}  {'STATE':<10} {'HEALTH':<8} {'RESTARTS':>8}  {'UPTIME':>8}"
    lines = [header]
    for r in rows:
        health = "ok" if r["healthy"] else ("-" if r["state"] != "running" else "waiting")
        pid = str(r["pid"]) if r["pid"] else "-"
        lines.append(f"{r['name']:<22} {pid:>7}  {r['state']:<10} {health:<8} {r['restarts']:>8}  "
                     f"{r['uptime_s']:>7.0f}s")
    return "\n".join(lines)
