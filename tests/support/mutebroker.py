"""A broker that says little, on loopback: for a client's timeouts, which a real broker is never slow enough for.

It accepts connections and reads what comes; with ``connack`` it answers the first bytes of each connection (the
CONNECT) with an MQTT 3.1.1 CONNACK (accepted, no session present) and nothing after, so a SUBSCRIBE is never
acknowledged; without, it answers nothing at all. It counts the connections it took and the bytes of ``marker``
it read (a topic filter in each SUBSCRIBE, say).
"""

from __future__ import annotations

import contextlib
import socket
import threading

CONNACK = bytes([0x20, 0x02, 0x00, 0x00])


class MuteBroker:
    def __init__(self, *, connack: bool, marker: bytes = b"") -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connack = connack
        self.marker = marker
        self.accepted = 0
        self.marked = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)  # kept open: a mute broker does not hang up
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        answered = not self.connack
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not answered:
                conn.sendall(CONNACK)
                answered = True
            if self.marker:
                self.marked += data.count(self.marker)

    def close(self) -> None:
        """Stop taking connections and drop the ones taken (shut down: a bare close() from another thread leaves
        the reading thread's recv, and so the connection, open)."""
        for sock in (self.sock, *self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()
