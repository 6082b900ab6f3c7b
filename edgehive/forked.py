"""The supervisor's side of ``edgehive.forkserver``: start components by fork, watch them like ``subprocess`` children.

``ForkServer.spawn`` returns a ``ForkedProcess``, which answers ``poll``, ``wait``,
``terminate`` and ``kill`` as a ``subprocess.Popen`` does, so the supervisor treats a
forked component and an exec'd one the same way. The fork server is started on first
use and again after it dies; a fork server's death takes its children with it
(PDEATHSIG), and they are reported as ended so that the supervisor restarts them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgehive.deathsig import die_with_parent
from edgehive.errors import EdgehiveError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
"""How long the fork server may take to import what it preloads and answer a first request."""
GONE_TIMEOUT_S = 5.0
"""After the fork server died: how long its children may take to end before they count as ended anyway."""


class ForkServerError(EdgehiveError):
    """The fork server refused a request or died while it was being made."""


class ForkedProcess:
    """A component forked by the fork server: the part of ``subprocess.Popen`` the supervisor uses."""

    def __init__(self, pid: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._ended = threading.Event()

    def _end(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """One ``python -m edgehive.forkserver`` process, with ``preload``'s imports done, and the children it forked."""

    def __init__(self, preload: Sequence[str], *, log_file: Path | None = None) -> None:
        self.preload = list(preload)
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests: int | None = None
        self._replies: int | None = None
        self._lock = threading.Lock()
        self._pid_ready = threading.Condition(self._lock)
        self._answers: list[ForkedProcess | str] = []
        """Answers not yet taken by ``spawn``: a child, or the reason a request was refused."""
        self._children: dict[int, ForkedProcess] = {}

    def spawn(self, argv: Sequence[str], env: dict[str, str], log: Path | None) -> ForkedProcess:
        """Fork ``argv`` (a ``python -m`` command line) with exactly ``env`` as its environment."""
        self._ensure()
        assert self._requests is not None
        request = json.dumps({"argv": list(argv), "env": env, "log": str(log) if log else None}) + "\n"
        with self._lock:
            os.write(self._requests, request.encode())
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self._answers:
                if self._proc is None or not self._pid_ready.wait(max(0.0, deadline - time.monotonic())):
                    raise ForkServerError(f"the fork server did not answer the request for {argv!r}")
            answer = self._answers.pop(0)
            if isinstance(answer, str):
                raise ForkServerError(f"the fork server refused {argv!r}: {answer}")
            answer.args = list(argv)
            return answer

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        output = self.log_file.open("ab") if self.log_file is not None else None
        argv = [sys.executable, "-m", "edgehive.forkserver", "--requests", str(requests_read),
                "--replies", str(replies_write), "--preload", ",".join(self.preload)]
        self._proc = subprocess.Popen(argv, pass_fds=(requests_read, replies_write), stdin=subprocess.DEVNULL,
                                      stdout=output, stderr=subprocess.STDOUT if output else None,
                                      start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509
        if output is not None:
            output.close()
        os.close(requests_read)
        os.close(replies_write)
        if self._requests is not None:
            os.close(self._requests)
        self._requests, self._replies = requests_write, replies_read
        log.info("started the fork server (pid %d), preloading %s", self._proc.pid, ", ".join(self.preload))
        threading.Thread(target=self._read, args=(self._proc, replies_read), name="forkserver-replies",
                         daemon=True).start()

    def _read(self, proc: subprocess.Popen[bytes], replies: int) -> None:
        with os.fdopen(replies, "rb") as stream:
            for line in stream:
                self._on_reply(json.loads(line))
        # The fork server is gone (killed, or stopped by close): its children got SIGTERM from the kernel.
        proc.wait()
        with self._lock:
            orphans = [c for c in self._children.values() if c.returncode is None]
            self._children.clear()
            if self._proc is proc:
                self._proc = None
            self._pid_ready.notify_all()
        for child in orphans:
            _wait_gone(child)

    def _on_reply(self, reply: dict[str, object]) -> None:
        with self._lock:
            exited = reply.get("exited")
            if isinstance(exited, int):
                code = reply.get("code")
                child = self._children.pop(exited, None)
                if child is not None:
                    child._end(code if isinstance(code, int) else 1)
                return
            pid = reply.get("pid")
            if isinstance(pid, int):
                # Registered here, not in spawn: its exit may be the very next reply.
                child = ForkedProcess(pid, [])
                self._children[pid] = child
                self._answers.append(child)
            else:
                self._answers.append(str(reply.get("error", reply)))
            self._pid_ready.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the fork server (after the supervisor stopped its children)."""
        proc = self._proc
        if proc is None:
            return
        if self._requests is not None:
            os.close(self._requests)
            self._requests = None
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_gone(child: ForkedProcess) -> None:
    """A child whose fork server died: SIGTERM came from the kernel; wait for it to end (SIGKILL after a while)."""
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while _alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # not ours to wait for: it is init's child now, only /proc tells
    if _alive(child.pid):
        child.kill()
    child._end(-signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def module_of(argv: Sequence[str]) -> str | None:
    """The module of a ``python -m module`` command line, else None."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
        return argv[2]
    return None
