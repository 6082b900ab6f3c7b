"""What every stream at the node shares, whatever it serves (a log, an exec, a forwarded port, metrics): who it
is (node and stream id), the window the cloud granted it, and one way of sending bytes up and of ending.

Bytes go up in data frames counted from 0 and never faster than the window allows, so a reader that stops holds
back the source instead of filling memory on either side; a stream the cloud cancelled (``stop`` set) says
nothing more, since the cloud already knows why it ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.stream.podmanapi import PodmanApi, PodmanApiError
from runtime.streamflow import SendWindow, StreamEnded
from schemas.streamframe import CHUNK, STDOUT, Frame, Kind

log = logging.getLogger(__name__)

Publish = Callable[[Frame], None]


class StreamSession:
    def __init__(self, api: PodmanApi, node: str, sid: str, window: SendWindow, publish: Publish) -> None:
        self.api = api
        self.node = node
        self.sid = sid
        self.window = window
        self.publish = publish
        self.stop = threading.Event()
        self.heard = time.monotonic()
        self._sent = 0

    def frame(self, kind: Kind, **fields: object) -> Frame:
        return Frame(self.node, self.sid, kind, **fields)  # type: ignore[arg-type]

    def cancel(self, ended: StreamEnded) -> None:
        """The cloud ended the stream (its reader went away) or went silent: stop now."""
        self.stop.set()
        self.window.end(ended)

    def send(self, data: bytes, channel: int = STDOUT) -> None:
        """Bytes up to the cloud, no faster than it grants (a paused reader pauses us; ``cancel`` ends it)."""
        while data:
            size = self.window.take(min(len(data), CHUNK))
            self.publish(self.frame(Kind.DATA, seq=self._sent, data=data[:size], channel=channel))
            self._sent, data = self._sent + 1, data[size:]

    def close(self, reason: str) -> None:
        """The stream's normal end, unless the cloud cancelled it."""
        if not self.stop.is_set():
            self.publish(self.frame(Kind.CLOSE, code=200, reason=reason))

    def failed(self, error: StreamEnded | PodmanApiError) -> None:
        """The stream's end on an error, said to the cloud unless it cancelled the stream itself."""
        if isinstance(error, PodmanApiError):
            log.info("stream %s: %s", self.sid, error)
            self.publish(self.frame(Kind.ERROR, code=error.code, reason=str(error)))
        elif not self.stop.is_set():
            self.publish(self.frame(Kind.ERROR, code=error.code, reason=error.reason))
