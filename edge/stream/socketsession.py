"""What an exec, an attach and a forwarded port have in common at the node: a socket (podman's hijacked
connection, or the pod's port) with bytes both ways, each way under the tunnel's credit.

Up: ``send`` takes credit before each frame, so a reader that stops holds back the socket's source. Down:
data frames are checked for order, queued, written to the socket by a thread of their own, and only then is
their credit given back, so what waits here is bounded by the window the cloud was granted (the same as
ours). An empty frame on channel 0 ends the writing half (stdin's end, or the client's half-close); channel
4 (a terminal size) goes to ``resized``. The stream is accepted, with the first credit frame, only once the
socket is there (``accept``), so that a refusal reaches kubectl before its connection is upgraded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading

from edge.stream.podmanapi import PodmanApi, PodmanApiError
from edge.stream.streamsession import Publish, StreamSession
from runtime.streamflow import Grants, SendWindow, StreamEnded
from schemas.streamframe import RESIZE, STDIN, Frame, Kind

log = logging.getLogger(__name__)


class SocketSession(StreamSession):
    def __init__(self, api: PodmanApi, node: str, sid: str, window: SendWindow, publish: Publish) -> None:
        super().__init__(api, node, sid, window, publish)
        self.grant = window.credit  # the cloud may send us as much as it lets us send
        self.grants = Grants(self.grant)
        self._sock: socket.socket | None = None
        self._expected = 0
        self._incoming: queue.Queue[tuple[int, bytes] | None] = queue.Queue()

    def cancel(self, ended: StreamEnded) -> None:
        """The cloud ended the stream (kubectl went away) or went silent: close the socket now."""
        super().cancel(ended)
        self._incoming.put(None)
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def receive(self, frame: Frame) -> None:
        if frame.seq != self._expected:
            self.cancel(StreamEnded(502, f"stream frame {self._expected} was lost (got {frame.seq})"))
            return
        self._expected += 1
        self._incoming.put((frame.channel, frame.data))

    def run(self) -> None:
        try:
            self.serve()
        except (StreamEnded, PodmanApiError) as error:
            self.failed(error)
        finally:
            self.stop.set()
            self._incoming.put(None)

    def serve(self) -> None:
        raise NotImplementedError

    def accept(self, sock: socket.socket) -> bool:
        """The socket is there: grant the cloud its window (the stream is accepted) and start writing what
        comes down to it. False when the stream was cancelled meanwhile (the socket is closed)."""
        self._sock = sock
        if self.stop.is_set():
            sock.close()
            return False
        self.publish(self.frame(Kind.CREDIT, credit=self.grant))
        threading.Thread(target=self._write, args=(sock,), name=f"down-{self.sid[:8]}", daemon=True).start()
        return True

    def resized(self, data: bytes) -> None:
        """A terminal size came down (only a session with a terminal has one)."""

    def _write(self, sock: socket.socket) -> None:
        while True:
            item = self._incoming.get()
            if item is None or self.stop.is_set():
                return
            channel, data = item
            if channel == RESIZE:
                self.resized(data)
                continue
            if channel != STDIN:
                continue
            if not data:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                continue  # resizes may still come
            try:
                sock.sendall(data)
            except OSError:
                return  # the far end stopped reading: its own end says why
            credit = self.grants.consumed(len(data))
            if credit:
                with contextlib.suppress(Exception):
                    self.publish(self.frame(Kind.CREDIT, credit=credit))
