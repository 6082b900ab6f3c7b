"""The two ends of a port-forward test: a local port that echoes (the "pod's" port) and a running
``kubectl port-forward`` with a client that sends bytes through it and reads what comes back."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator

from tests.fixtures.processes import wait_until

TIMEOUT_S = 60.0


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that echoes what it gets until the client half-closes: the "pod's" port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


class PortForward:
    """A running ``kubectl port-forward``, its output collected as it comes."""

    def __init__(self, kubectl: list[str], pod: str, port: int, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([*kubectl, "port-forward", f"pod/{pod}", f":{port}"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self.output = b""
        threading.Thread(target=self._collect, daemon=True).start()
        found = wait_until(lambda: re.search(rb"Forwarding from 127\.0\.0\.1:(\d+)", self.output),
                           timeout=TIMEOUT_S, what="kubectl port-forward to listen")
        self.local_port = int(found.group(1))

    def _collect(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 4096):
            self.output += chunk

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=TIMEOUT_S)


def round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as conn:
        def send() -> None:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while data := conn.recv(65536):
            received += data
        sender.join()
        return bytes(received)
