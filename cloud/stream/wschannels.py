"""The remotecommand protocol v5 (``v5.channel.k8s.io``) over WebSocket, sans-IO.

Facts of the protocol: every binary message starts with its channel's byte (0 stdin, 1 stdout, 2 stderr,
3 error, 4 resize); v5 adds channel 255, whose message ``[255, N]`` says the sender will write no more on
channel N (how kubectl ends stdin). The error channel carries the same metav1.Status as v4's error stream,
and the server ends the command with a normal close (1000), which the client reads as the end of every stream.
Unlike SPDY there are no streams to wait for: the command starts as soon as the upgrade is answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from cloud.stream.remotecommand import (
    Aborted,
    CommandEvent,
    ExecOptions,
    ResizeDecoder,
    StdinClosed,
    StdinData,
    exit_status,
    internal_error_status,
)
from cloud.stream.websocket import Closed, Message, WebSocketConnection, WebSocketEvent

V5 = "v5.channel.k8s.io"
SUPPORTED_PROTOCOLS = (V5,)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


@dataclass
class WebSocketCommandSession:
    """One exec or attach on ``connection``, upgraded with v5: the command may start at once."""
    connection: WebSocketConnection
    options: ExecOptions
    finished: bool = False
    stdin_open: bool = True
    _resizes: ResizeDecoder = field(default_factory=ResizeDecoder)

    def handle(self, events: Iterable[WebSocketEvent]) -> list[CommandEvent]:
        out: list[CommandEvent] = []
        for event in events:
            match event:
                case Message(payload) if payload:
                    channel, data = payload[0], payload[1:]
                    if channel == STDIN and self.options.stdin and self.stdin_open and data:
                        out.append(StdinData(data))
                    elif channel == CLOSE and data[:1] == bytes([STDIN]) and self.stdin_open:
                        self.stdin_open = False
                        out.append(StdinClosed())
                    elif channel == RESIZE and self.options.tty:
                        out.extend(self._resizes.feed(data))
                case Closed(_code, error) if not self.finished:
                    self.finished = True
                    if self.stdin_open and self.options.stdin:
                        self.stdin_open = False
                        out.append(StdinClosed())
                    out.append(Aborted(error or "the client closed the connection"))
        return out

    def stdin_consumed(self, count: int) -> None:
        """WebSocket has no windows: the back-pressure on stdin is TCP's alone."""

    def write_stdout(self, data: bytes) -> None:
        if self.options.stdout and data and not self.finished:
            self.connection.send(bytes([STDOUT]) + data)

    def write_stderr(self, data: bytes) -> None:
        channel = STDOUT if self.options.tty or not self.options.stderr else STDERR
        if data and not self.finished and (self.options.stderr or self.options.tty):
            self.connection.send(bytes([channel]) + data)

    def finish(self, exit_code: int | None, error: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        status = internal_error_status(error) if exit_code is None else exit_status(exit_code)
        self.connection.send(bytes([ERROR]) + json.dumps(status).encode())
        self.connection.close()
