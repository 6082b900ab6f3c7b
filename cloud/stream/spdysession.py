"""A sans-IO SPDY/3.1 session: bytes in, events out; calls in, bytes out.

The session owns the streams of one upgraded connection (their states, their flow-control windows) and knows
nothing of sockets or threads: the server feeds it what it read (``receive_data``), acts on the events, calls
``reply``/``send_data``/``end_stream``..., and writes ``data_to_send()``. One lock around a session makes it
usable from several threads.

Flow control has two modes, because the peers that matter do not do what SPDY/3.1 says:

- ``FlowControl.STRICT`` is SPDY/3.1 as written: the peer's stream and session windows (64 KiB each to start)
  hold our DATA back until its WINDOW_UPDATEs open them, and a peer that overruns our windows gets a
  FLOW_CONTROL_ERROR.
- ``FlowControl.ADVISORY`` (the default) keeps the same accounting and sends the same WINDOW_UPDATEs, but lets
  neither side's window stop data. The Go SPDY library that kubectl and the API server use (spdystream) ignores
  WINDOW_UPDATE and SETTINGS and never sends either: honouring its windows would stall every stream after
  64 KiB, and policing ours would reset every stream that carries more. Against such a peer the back-pressure is
  TCP's: the server stops reading the socket while ``unconsumed`` (bytes delivered but not yet passed on, see
  ``consumed``) is above its limit, and stops producing while ``data_to_send`` has not been written, so a slow
  reader on either side holds a bounded amount here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cloud.stream.spdyframes import (
    FLAG_FIN,
    FLAG_UNIDIRECTIONAL,
    MAX_STREAM_ID,
    MAX_WINDOW,
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    GoAwayStatus,
    Headers,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Setting,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    WindowUpdate,
)

DEFAULT_WINDOW = 64 * 1024
DATA_CHUNK = 32 * 1024


class FlowControl(enum.Enum):
    STRICT = "strict"
    ADVISORY = "advisory"


@dataclass(frozen=True)
class StreamOpened:
    """The peer opened a stream; ``reply`` (or ``reset_stream``) answers it."""
    stream_id: int
    headers: Headers
    remote_closed: bool


@dataclass(frozen=True)
class StreamReplied:
    stream_id: int
    headers: Headers


@dataclass(frozen=True)
class HeadersReceived:
    stream_id: int
    headers: Headers


@dataclass(frozen=True)
class DataReceived:
    """Data on a stream; pass ``len(data)`` to ``consumed`` once it has gone where it was going."""
    stream_id: int
    data: bytes


@dataclass(frozen=True)
class StreamEnded:
    """The peer will send nothing more on the stream (its FIN); we may still send."""
    stream_id: int


@dataclass(frozen=True)
class StreamReset:
    stream_id: int
    status: int


@dataclass(frozen=True)
class PingAcknowledged:
    ping_id: int


@dataclass(frozen=True)
class GoAwayReceived:
    last_good_stream_id: int
    status: int


@dataclass(frozen=True)
class ConnectionClosed:
    """The session is over: after a protocol error (``error``) the GOAWAY saying so is in ``data_to_send``."""
    reason: str
    error: bool


Event = (StreamOpened | StreamReplied | HeadersReceived | DataReceived | StreamEnded | StreamReset
         | PingAcknowledged | GoAwayReceived | ConnectionClosed)


@dataclass
class _Stream:
    stream_id: int
    local_open: bool
    remote_open: bool
    send_window: int
    recv_window: int
    replied: bool
    pending: bytearray = field(default_factory=bytearray)
    fin_pending: bool = False
    unconsumed: int = 0
    consumed_since_update: int = 0


class SpdySession:
    """One side of one SPDY/3.1 connection (the server side unless ``server=False``)."""

    def __init__(self, *, server: bool = True, flow_control: FlowControl = FlowControl.ADVISORY,
                 receive_window: int = DEFAULT_WINDOW, max_streams: int = 100,
                 max_frame: int = 1 << 20) -> None:
        self._server = server
        self._strict = flow_control is FlowControl.STRICT
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._out = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 2 if server else 1
        self._next_ping = 2 if server else 1
        self._pings: set[int] = set()
        self._last_peer_id = 0
        self._max_streams = max_streams
        self._peer_initial_window = DEFAULT_WINDOW
        self._send_session_window = DEFAULT_WINDOW
        self._receive_window = receive_window
        self._session_window_size = max(receive_window, DEFAULT_WINDOW)
        self._recv_session_window = self._session_window_size
        self._session_consumed = 0
        self._goaway_sent = False
        self._goaway_received = False
        self.closed = False
        if receive_window != DEFAULT_WINDOW:
            # SETTINGS sizes the stream windows; the session window starts at 64 KiB whatever SETTINGS say.
            self._emit(Settings({Setting.INITIAL_WINDOW_SIZE: receive_window}))
            if receive_window > DEFAULT_WINDOW:
                self._emit(WindowUpdate(0, receive_window - DEFAULT_WINDOW))

    # ---- bytes in, bytes out

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def unconsumed(self) -> int:
        """Bytes delivered in DataReceived events and not yet given back through ``consumed``."""
        return sum(stream.unconsumed for stream in self._streams.values())

    def pending(self, stream_id: int) -> int:
        """Bytes of ``send_data`` on the stream still held back by the peer's window (strict mode only)."""
        stream = self._streams.get(stream_id)
        return len(stream.pending) if stream is not None else 0

    def can_send(self, stream_id: int) -> bool:
        """Whether ``send_data`` may be called: the stream is open on our side and not ending."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.local_open and not stream.fin_pending and not self.closed

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            return []
        events: list[Event] = []
        try:
            for frame in self._decoder.feed(data):
                self._handle(frame, events)
        except SpdyProtocolError as error:
            events.append(self._fail(str(error)))
        return events

    def connection_lost(self) -> list[Event]:
        """The transport ended (EOF or error): every stream is gone."""
        if self.closed:
            return []
        self.closed = True
        self._streams.clear()
        return [ConnectionClosed("the connection ended", error=False)]

    # ---- calls in

    def reply(self, stream_id: int, headers: Headers | None = None, *, fin: bool = False) -> None:
        stream = self._require(stream_id)
        if stream.replied:
            raise ValueError(f"stream {stream_id} has already been replied to")
        stream.replied = True
        self._emit(SynReply(stream_id, headers or {}, FLAG_FIN if fin else 0))
        if fin:
            self._local_done(stream)

    def open_stream(self, headers: Headers, *, fin: bool = False) -> int:
        if self._goaway_received or self._goaway_sent:
            raise ValueError("the session is going away; no new streams")
        stream_id = self._next_id
        if stream_id > MAX_STREAM_ID:
            raise ValueError("stream ids are exhausted on this connection")
        self._next_id += 2
        stream = _Stream(stream_id, local_open=True, remote_open=True, send_window=self._peer_initial_window,
                         recv_window=self._receive_window, replied=True)
        self._streams[stream_id] = stream
        self._emit(SynStream(stream_id, headers, flags=FLAG_FIN if fin else 0))
        if fin:
            self._local_done(stream)
        return stream_id

    def send_data(self, stream_id: int, data: bytes) -> None:
        stream = self._require(stream_id)
        if not stream.local_open or stream.fin_pending:
            raise ValueError(f"stream {stream_id} is closed for sending")
        stream.pending += data
        self._flush(stream)

    def end_stream(self, stream_id: int) -> None:
        """Our FIN, sent once whatever ``send_data`` holds back has gone."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open or stream.fin_pending:
            return
        stream.fin_pending = True
        self._flush(stream)

    def reset_stream(self, stream_id: int, status: int = RstStatus.CANCEL) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._emit(RstStream(stream_id, status))

    def consumed(self, stream_id: int, count: int) -> None:
        """``count`` bytes of the stream's data have been passed on: open the windows they took again."""
        self._session_consumed += count
        self._recv_session_window += count
        if self._session_consumed >= self._session_window_size // 2:
            self._emit(WindowUpdate(0, self._session_consumed))
            self._session_consumed = 0
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.unconsumed = max(0, stream.unconsumed - count)
        stream.recv_window += count
        stream.consumed_since_update += count
        if stream.remote_open and stream.consumed_since_update >= self._receive_window // 2:
            self._emit(WindowUpdate(stream_id, stream.consumed_since_update))
            stream.consumed_since_update = 0
        self._forget_if_done(stream)

    def ping(self) -> int:
        ping_id = self._next_ping
        self._next_ping += 2
        self._pings.add(ping_id)
        self._emit(Ping(ping_id))
        return ping_id

    def close(self, status: int = GoAwayStatus.OK) -> None:
        """Our GOAWAY: no new streams; the existing ones may finish."""
        if not self._goaway_sent:
            self._goaway_sent = True
            self._emit(GoAway(self._last_peer_id, status))

    # ---- frames in

    def _handle(self, frame: Frame, events: list[Event]) -> None:
        match frame:
            case Data():
                self._on_data(frame, events)
            case SynStream():
                self._on_syn_stream(frame, events)
            case SynReply(stream_id, headers, flags):
                stream = self._streams.get(stream_id)
                if stream is None or stream_id % 2 != self._next_id % 2:
                    self._emit(RstStream(stream_id, RstStatus.INVALID_STREAM))
                    return
                events.append(StreamReplied(stream_id, headers))
                self._remote_fin(stream, flags, events)
            case HeadersFrame(stream_id, headers, flags):
                stream = self._streams.get(stream_id)
                if stream is None:
                    self._emit(RstStream(stream_id, RstStatus.INVALID_STREAM))
                    return
                events.append(HeadersReceived(stream_id, headers))
                self._remote_fin(stream, flags, events)
            case RstStream(stream_id, status):
                if self._streams.pop(stream_id, None) is not None:
                    events.append(StreamReset(stream_id, status))
            case Settings(values):
                window = values.get(Setting.INITIAL_WINDOW_SIZE)
                if window is not None:
                    if window > MAX_WINDOW:
                        raise SpdyProtocolError(f"SETTINGS initial window {window} is above 2^31-1")
                    for stream in self._streams.values():
                        stream.send_window += window - self._peer_initial_window
                    self._peer_initial_window = window
                    self._flush_all()
            case Ping(ping_id):
                if ping_id % 2 == self._next_ping % 2:
                    if ping_id in self._pings:
                        self._pings.discard(ping_id)
                        events.append(PingAcknowledged(ping_id))
                else:
                    self._emit(Ping(ping_id))
            case GoAway(last_good, status):
                self._goaway_received = True
                events.append(GoAwayReceived(last_good, status))
            case WindowUpdate(stream_id, delta):
                self._on_window_update(stream_id, delta)

    def _on_syn_stream(self, frame: SynStream, events: list[Event]) -> None:
        stream_id = frame.stream_id
        if stream_id % 2 == self._next_id % 2:
            raise SpdyProtocolError(f"the peer opened stream {stream_id}, an id of our side")
        if stream_id <= self._last_peer_id:
            raise SpdyProtocolError(f"stream {stream_id} opened after stream {self._last_peer_id}")
        self._last_peer_id = stream_id
        if self._goaway_sent or len(self._streams) >= self._max_streams:
            self._emit(RstStream(stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = _Stream(stream_id, local_open=not frame.flags & FLAG_UNIDIRECTIONAL,
                         remote_open=not frame.flags & FLAG_FIN, send_window=self._peer_initial_window,
                         recv_window=self._receive_window, replied=False)
        self._streams[stream_id] = stream
        events.append(StreamOpened(stream_id, frame.headers, remote_closed=not stream.remote_open))
        if not stream.remote_open:
            events.append(StreamEnded(stream_id))

    def _on_data(self, frame: Data, events: list[Event]) -> None:
        size = len(frame.data)
        self._recv_session_window -= size
        if self._strict and self._recv_session_window < 0:
            raise SpdyProtocolError("the peer sent past the session's flow-control window")
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            self.consumed(frame.stream_id, size)  # nobody will consume it: give the session window back
            if frame.stream_id > max(self._last_peer_id, self._next_id - 2):
                self._emit(RstStream(frame.stream_id, RstStatus.INVALID_STREAM))
            return  # else a stream that just ended: its last frames in flight are dropped
        if not stream.remote_open:
            self.reset_stream(frame.stream_id, RstStatus.STREAM_ALREADY_CLOSED)
            self.consumed(frame.stream_id, size)
            events.append(StreamReset(frame.stream_id, RstStatus.STREAM_ALREADY_CLOSED))
            return
        stream.recv_window -= size
        if self._strict and stream.recv_window < 0:
            self.reset_stream(frame.stream_id, RstStatus.FLOW_CONTROL_ERROR)
            self.consumed(frame.stream_id, size)
            events.append(StreamReset(frame.stream_id, RstStatus.FLOW_CONTROL_ERROR))
            return
        if size:
            stream.unconsumed += size
            events.append(DataReceived(frame.stream_id, frame.data))
        self._remote_fin(stream, frame.flags, events)

    def _on_window_update(self, stream_id: int, delta: int) -> None:
        if stream_id == 0:
            self._send_session_window += delta
            if self._send_session_window > MAX_WINDOW:
                raise SpdyProtocolError("WINDOW_UPDATE took the session window above 2^31-1")
            self._flush_all()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a stream that just ended; the update was in flight
        stream.send_window += delta
        if stream.send_window > MAX_WINDOW:
            self.reset_stream(stream_id, RstStatus.FLOW_CONTROL_ERROR)
            return
        self._flush(stream)

    def _remote_fin(self, stream: _Stream, flags: int, events: list[Event]) -> None:
        if flags & FLAG_FIN and stream.remote_open:
            stream.remote_open = False
            events.append(StreamEnded(stream.stream_id))
            self._forget_if_done(stream)

    # ---- frames out

    def _flush_all(self) -> None:
        for stream in list(self._streams.values()):
            self._flush(stream)

    def _flush(self, stream: _Stream) -> None:
        while stream.pending:
            room = len(stream.pending)
            if self._strict:
                room = min(room, stream.send_window, self._send_session_window)
                if room <= 0:
                    return
            chunk = bytes(stream.pending[:min(room, DATA_CHUNK)])
            del stream.pending[:len(chunk)]
            stream.send_window -= len(chunk)
            self._send_session_window -= len(chunk)
            last = stream.fin_pending and not stream.pending
            self._emit(Data(stream.stream_id, chunk, FLAG_FIN if last else 0))
            if last:
                self._local_done(stream)
                return
        if stream.fin_pending and stream.local_open:
            self._emit(Data(stream.stream_id, b"", FLAG_FIN))
            self._local_done(stream)

    def _local_done(self, stream: _Stream) -> None:
        stream.local_open = False
        self._forget_if_done(stream)

    def _forget_if_done(self, stream: _Stream) -> None:
        if not stream.local_open and not stream.remote_open and not stream.pending and not stream.unconsumed:
            self._streams.pop(stream.stream_id, None)

    def _emit(self, frame: Frame) -> None:
        self._out += self._encoder.encode(frame)

    def _require(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ValueError(f"stream {stream_id} is not open")
        return stream

    def _fail(self, reason: str) -> ConnectionClosed:
        self._emit(GoAway(self._last_peer_id, GoAwayStatus.PROTOCOL_ERROR))
        self._goaway_sent = True
        self.closed = True
        self._streams.clear()
        return ConnectionClosed(f"SPDY protocol error: {reason}", error=True)
