"""The Kubernetes remotecommand protocol (exec and attach) over a SPDY session, sans-IO.

Facts of the protocol as the kubelet speaks it:

- The client opens one stream per channel, named by its ``streamType`` header: ``error`` always, ``stdin``,
  ``stdout``, ``stderr`` as the request asked, and ``resize`` when it asked for a TTY (protocols v3 and v4).
  The server replies to each and starts once all the expected ones are there.
- The kubelet's query parameters are ``command`` (repeated), ``input``, ``output``, ``error`` and ``tty``
  ("1" for yes), the container being in the path (``/exec/NS/POD/CONTAINER``); the API server's own
  (PodExecOptions, what kubectl sends it) are ``command``, ``container``, ``stdin``, ``stdout``, ``stderr``
  and ``tty``. With a TTY there is no stderr: the terminal merges it into stdout.
- The end: in v4 the error stream carries a JSON metav1.Status, Success, or Failure with reason
  NonZeroExitCode and a cause {reason: ExitCode, message: "N"}, from which kubectl takes its own exit code;
  v1 to v3 carry only a failure's message as text.
- Resize events are JSON objects {"Width": W, "Height": H}, one after another on the resize stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from cloud.errors import CloudError
from cloud.stream.spdysession import (
    ConnectionClosed,
    DataReceived,
    Event,
    SpdySession,
    StreamEnded,
    StreamOpened,
    StreamReset,
)

V4 = "v4.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
SUPPORTED_PROTOCOLS = (V4, V3, V2, V1)
STREAM_TYPE_HEADER = "streamtype"
MAX_RESIZE_BUFFER = 4096


class RemoteCommandError(CloudError, ValueError):
    """A request that cannot be served as asked (answered with 400 and this message)."""


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def expected_streams(self, protocol: str) -> set[str]:
        wanted = {"error"}
        wanted |= {name for name, asked in (("stdin", self.stdin), ("stdout", self.stdout),
                                            ("stderr", self.stderr)) if asked}
        if self.tty and protocol in (V4, V3):
            wanted.add("resize")
        return wanted


def kubelet_exec_options(query: str, container: str, *, attach: bool = False) -> ExecOptions:
    """The options of a kubelet ``/exec`` or ``/attach`` request (``input=1&output=1&command=...``)."""
    values = parse_qs(query, keep_blank_values=True)
    return _options(values.get("command", []), container, *(_last(values, name) == "1"
                                                             for name in ("input", "output", "error", "tty")),
                    attach=attach)


def apiserver_exec_options(query: str, *, attach: bool = False) -> ExecOptions:
    """The options of the API server's pods/exec or pods/attach request, as kubectl sends them."""
    values = parse_qs(query, keep_blank_values=True)
    flags = (_last(values, name).lower() in ("1", "true") for name in ("stdin", "stdout", "stderr", "tty"))
    return _options(values.get("command", []), _last(values, "container"), *flags, attach=attach)


def _last(values: dict[str, list[str]], name: str) -> str:
    found = values.get(name)
    return found[-1] if found else ""


def _options(command: list[str], container: str, stdin: bool, stdout: bool, stderr: bool, tty: bool, *,
             attach: bool) -> ExecOptions:
    if tty:
        stderr = False
    if not (stdin or stdout or stderr):
        raise RemoteCommandError("you must specify at least 1 of stdin, stdout, stderr")
    if not attach and not command:
        raise RemoteCommandError("you must specify a command to execute")
    return ExecOptions(list(command), container, stdin, stdout, stderr, tty)


def exit_status(exit_code: int) -> dict[str, object]:
    """The metav1.Status a v4 error stream carries for a command that exited with ``exit_code``."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {exit_code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}


def internal_error_status(message: str) -> dict[str, object]:
    """The Status for a command that could not be run at all (kubectl prints the message and exits 1)."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


@dataclass(frozen=True)
class Ready:
    """Every expected stream is open and replied to: start the command."""


@dataclass(frozen=True)
class StdinData:
    data: bytes


@dataclass(frozen=True)
class StdinClosed:
    """The client's stdin ended (or the client went away): close the command's stdin."""


@dataclass(frozen=True)
class Resized:
    width: int
    height: int


@dataclass(frozen=True)
class Aborted:
    """The connection ended before ``finish``: stop the command."""
    reason: str


CommandEvent = Ready | StdinData | StdinClosed | Resized | Aborted


class ResizeDecoder:
    """The terminal sizes in a resize stream's bytes, as they come in any slicing."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Resized]:
        self._buffer += data
        decoder = json.JSONDecoder()
        text = self._buffer.decode("utf-8", errors="replace")
        sizes, position = [], 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            try:
                size, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                break
            if isinstance(size, dict) and isinstance(size.get("Width"), int) and isinstance(size.get("Height"), int):
                sizes.append(Resized(size["Width"], size["Height"]))
        del self._buffer[:len(text[:position].encode("utf-8"))]
        if len(self._buffer) > MAX_RESIZE_BUFFER:
            self._buffer.clear()  # not JSON: the kubelet stops reading resizes; we drop the garbage
        return sizes


@dataclass
class RemoteCommandSession:
    """The streams of one exec or attach on ``session``, already upgraded with ``protocol``."""
    session: SpdySession
    protocol: str
    options: ExecOptions
    streams: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    finished: bool = False
    _resizes: ResizeDecoder = field(default_factory=ResizeDecoder)

    def handle(self, events: Iterable[Event]) -> list[CommandEvent]:
        out: list[CommandEvent] = []
        for event in events:
            match event:
                case StreamOpened(stream_id, headers):
                    self._opened(stream_id, headers.get(STREAM_TYPE_HEADER, [""])[0], out)
                case DataReceived(stream_id, data):
                    self._data(stream_id, data, out)
                case StreamEnded(stream_id) | StreamReset(stream_id) if stream_id == self.streams.get("stdin"):
                    out.append(StdinClosed())
                case ConnectionClosed(reason) if not self.finished:
                    self.finished = True
                    if self.streams.get("stdin") is not None:
                        out.append(StdinClosed())
                    out.append(Aborted(reason))
        return out

    def _opened(self, stream_id: int, kind: str, out: list[CommandEvent]) -> None:
        expected = self.options.expected_streams(self.protocol)
        if kind not in expected or kind in self.streams:
            # The kubelet replies to a stream it does not use and ignores it; a second stream of a kind already
            # open would otherwise be silently shadowed, so it is reset instead.
            if kind in self.streams:
                self.session.reset_stream(stream_id)
                return
            self.session.reply(stream_id)
            return
        self.streams[kind] = stream_id
        self.session.reply(stream_id)
        if not self.ready and set(self.streams) == expected:
            self.ready = True
            out.append(Ready())

    def _data(self, stream_id: int, data: bytes, out: list[CommandEvent]) -> None:
        if stream_id == self.streams.get("stdin"):
            out.append(StdinData(data))  # given back by stdin_consumed once written to the command
            return
        self.session.consumed(stream_id, len(data))
        if stream_id != self.streams.get("resize"):
            return  # nothing else is read; the kubelet drops it too
        out.extend(self._resizes.feed(data))

    def stdin_consumed(self, count: int) -> None:
        stream_id = self.streams.get("stdin")
        if stream_id is not None:
            self.session.consumed(stream_id, count)

    def write_stdout(self, data: bytes) -> None:
        self._write("stdout", data)

    def write_stderr(self, data: bytes) -> None:
        # With a TTY the command's stderr is the terminal's, and the client has no stderr stream.
        self._write("stderr" if "stderr" in self.streams else "stdout", data)

    def _write(self, kind: str, data: bytes) -> None:
        stream_id = self.streams.get(kind)
        if stream_id is not None and data and not self.finished and self.session.can_send(stream_id):
            self.session.send_data(stream_id, data)

    def finish(self, exit_code: int | None, error: str = "") -> None:
        """The command is over: its exit code (or ``error`` when it could not run) goes on the error stream,
        every stream ends, and the session says GOAWAY."""
        if self.finished or self.session.closed:
            self.finished = True
            return
        self.finished = True
        for kind in ("stdout", "stderr"):
            if kind in self.streams:
                self.session.end_stream(self.streams[kind])
        status = internal_error_status(error) if exit_code is None else exit_status(exit_code)
        error_stream = self.streams.get("error")
        if error_stream is not None and self.session.can_send(error_stream):
            if self.protocol == V4:
                self.session.send_data(error_stream, json.dumps(status).encode())
            elif status["status"] != "Success":
                self.session.send_data(error_stream, str(status["message"]).encode())
            self.session.end_stream(error_stream)
        self.session.close()
