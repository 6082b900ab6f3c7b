"""mosquitto as a child process that follows a CRL file.

mosquitto re-reads its CRL on SIGHUP, so a revoked certificate cannot connect again,
but it keeps a revoked client that is already connected (measured with 2.0.11). Cutting
that client off needs a restart: this wrapper stops mosquitto cleanly (its persistent
store is saved), starts it again on the new CRL, and every other client reconnects
within its backoff (about a second) with its session intact.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

from broker.revocation import CrlFollower

log = logging.getLogger(__name__)


class MosquittoProcess:
    """Popen's poll/terminate/wait/kill over a mosquitto that is restarted when the CRL changes."""

    def __init__(self, argv: list[str], crl_file: Path | None, check_every_s: float = 1.0) -> None:
        self.args = argv
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._child = subprocess.Popen(argv)
        self.restarts = 0
        self._crl = CrlFollower(crl_file) if crl_file else None
        if self._crl is not None:
            threading.Thread(target=self._follow, args=(check_every_s,), name="crl-follower", daemon=True).start()

    def _follow(self, every: float) -> None:
        assert self._crl is not None
        while not self._stopping.wait(every):
            if self._crl.changed():
                self.restart("the CRL changed: restarting mosquitto to cut off revoked clients")

    def restart(self, why: str) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            log.warning("%s", why)
            self._child.terminate()
            try:
                self._child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
            self._child = subprocess.Popen(self.args)
            self.restarts += 1

    def poll(self) -> int | None:
        with self._lock:
            return self._child.poll()

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def terminate(self) -> None:
        self._stopping.set()
        with self._lock:
            self._child.terminate()

    def kill(self) -> None:
        self._stopping.set()
        with self._lock:
            self._child.kill()

    def wait(self, timeout: float | None = None) -> int:
        return self._child.wait(timeout)
