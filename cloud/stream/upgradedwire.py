"""An upgraded connection from the API server (SPDY, WebSocket, or SPDY in WebSocket), driven on its socket.

One thread, the request's own, owns the TLS socket: it reads the API server and writes what the sans-IO
session has to send. Other threads (the pumps that bring a node's output) never touch the socket: they run
a step on the session under ``lock`` (``step``), wake the owner, and wait until what they made has been
written. Two reasons: an ``ssl.SSLSocket`` must not be read and written by two threads at once (OpenSSL's
SSL object is not thread-safe), and a pump that waits for its bytes to leave holds back its source, so
memory stays bounded by one chunk per pump however slow the reader (the tunnel's credit does the rest).

The owner stops reading the API server while ``paused()`` says so (stdin queued for a node that has not
taken it yet): TCP then holds back the client, since Kubernetes' Go client ignores SPDY windows.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

READ_SIZE = 65536
POLL_S = 0.05
"""How long a read of the socket may wait before the owner looks at what it has to write again."""


class ByteSession(Protocol):
    def receive_data(self, data: bytes) -> Sequence[Any]: ...

    def connection_lost(self) -> Sequence[Any]: ...

    def data_to_send(self) -> bytes: ...


class UpgradedWire:
    def __init__(self, sock: socket.socket, session: ByteSession) -> None:
        self.sock = sock
        self.session = session
        self.lock = threading.Lock()
        self._written = threading.Condition(self.lock)
        self._made = 0  # steps run by pumps
        self._flushed = 0  # steps whose output is written
        self._done = False
        self._broken = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)

    def step(self, change: Callable[[], None]) -> bool:
        """Run ``change`` on the session from another thread and wait until its bytes are written;
        False once the connection is gone (the caller stops)."""
        with self.lock:
            if self._broken:
                return False
            change()
            self._made += 1
            mine = self._made
        self._wake()
        with self.lock:
            while self._flushed < mine and not self._broken:
                self._written.wait()
            return not self._broken

    def finish(self) -> None:
        """The conversation is over (the session said goodbye): write what is left and end."""
        with self.lock:
            self._done = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def run(self, handle: Callable[[Sequence[Any]], Sequence[object]], act: Callable[[object], None],
            paused: Callable[[], bool] = lambda: False, early: bytes = b"") -> None:
        """Drive the connection until it ends: what the client sends (from ``early``, bytes that came with the
        upgrade request) goes through ``handle`` (the channel protocol), whose actions ``act`` performs outside
        the lock, on this thread: an action must never wait for the client or call ``step``."""
        try:
            while True:
                if not self._flush():
                    return
                with self.lock:
                    if self._done:
                        return
                chunk, early = (early, b"") if early else (self._read(paused()), b"")
                if chunk is None:
                    continue
                with self.lock:
                    events = self.session.receive_data(chunk) if chunk else self.session.connection_lost()
                    actions = handle(events)
                for action in actions:
                    act(action)
                if not chunk:
                    self._flush()
                    return
        finally:
            with self.lock:
                self._broken = True
                self._written.notify_all()
            self._wake_r.close()
            self._wake_w.close()

    def _read(self, paused: bool) -> bytes | None:
        """Bytes from the client, b"" at its end, None when there were none yet (or a wake-up)."""
        pending = isinstance(self.sock, ssl.SSLSocket) and not paused and self.sock.pending() > 0
        if not pending:
            readers = [self._wake_r] if paused else [self._wake_r, self.sock]
            readable, _, _ = select.select(readers, [], [], 1.0)
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if self.sock not in readable:
                return None
        self.sock.settimeout(POLL_S)  # a TLS record may be readable without application data in it yet
        try:
            return self.sock.recv(READ_SIZE)
        except (TimeoutError, ssl.SSLWantReadError):
            return None
        except OSError:
            return b""
        finally:
            self.sock.settimeout(None)

    def _flush(self) -> bool:
        with self.lock:
            out = self.session.data_to_send()
            made = self._made
        if out:
            try:
                self.sock.sendall(out)
            except OSError:
                return False
        with self.lock:
            self._flushed = made
            self._written.notify_all()
        return True
