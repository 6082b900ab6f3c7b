"""The node's stream end: answers the streams the cloud stream server opens to this node, from podman.

It listens on this node's stream topic (``edgehive/link/<node>/stream/down`` on the edge broker, which the
bridge carries from the cloud broker) and answers on ``.../stream/up``; a frame addressed to another node
is refused. At most ``max_streams`` at once (past that: 429); a stream whose cloud end is silent for
``idle_timeout_s`` is ended (each end pings every third of it), so nothing is left reading podman for a
reader that is gone. The ``op`` of a stream's request picks its session: a log (edge/stream/session.py), an
exec or attach (execsession.py), a forwarded connection (forwardsession.py); the last two also take data
frames from the cloud (stdin, terminal sizes, a client's bytes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from edge.stream.execsession import ExecSession
from edge.stream.forwardsession import ForwardSession
from edge.stream.metricssession import MetricsSession
from edge.stream.metricssnapshot import Rates
from edge.stream.podmanapi import PodmanApi
from edge.stream.session import LogSession
from edge.stream.socketsession import SocketSession
from runtime.bus import Bus
from runtime.component import ComponentSettings
from runtime.cpupriority import check_nice, lower_priority, nice_field
from runtime.streamflow import SendWindow, StreamEnded
from schemas import topics
from schemas.envelope import RawSend
from schemas.execrequest import ATTACH, EXEC, PORT_FORWARD, ExecRequest, ForwardRequest
from schemas.fields import BodyError
from schemas.metricsrequest import METRICS, MetricsRequest
from schemas.streamframe import Frame, FrameError, Kind, decode
from schemas.streamrequest import LogRequest

log = logging.getLogger(__name__)

MODULE = "stream"
Session = LogSession | MetricsSession | ExecSession | ForwardSession


@dataclass(frozen=True)
class StreamEndSettings(ComponentSettings):
    podman_url: str = field(default="unix:///run/podman/podman.sock", metadata={
        "help": "podman's REST API: unix:///path/to/podman.sock (the one EdgeD uses)"})
    max_streams: int = field(default=32, metadata={"help": "streams open at once on this node; more are refused"})
    idle_timeout_s: float = field(default=30.0, metadata={
        "help": "seconds without a frame from the cloud before a stream is ended"})
    nice: int = nice_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nice(self.nice)


class StreamEnd:
    def __init__(self, settings: StreamEndSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.node = settings.node
        self.api = PodmanApi(settings.podman_url, settings.node)
        self.up = topics.stream(self.node, topics.Direction.UP)
        self.sessions: dict[str, Session] = {}
        self.rates = Rates()  # the previous CPU readings, for the Summary's usageNanoCores
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pinger = threading.Thread(target=self._ping_loop, name="stream-ping", daemon=True)

    def start(self) -> None:
        lower_priority(self.settings.nice)
        self.bus.handle_raw(topics.stream(self.node, topics.Direction.DOWN), self.on_frame)
        self._pinger.start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            session.cancel(StreamEnded(503, f"the stream end of node {self.node} stopped"))

    def report(self) -> dict[str, object]:
        return {"streams": len(self.sessions)}

    def publish(self, frame: Frame) -> None:
        self.bus.connection.publish(self.up, frame.encode(), qos=1)
        if frame.kind == Kind.DATA:
            self.bus.counters.inc("stream_bytes_sent", len(frame.data))

    def on_frame(self, _topic: str, payload: bytes) -> Iterable[RawSend] | None:
        try:
            frame = decode(payload)
        except FrameError as exc:
            self.bus.counters.inc("frames_refused")
            log.warning("refused a stream frame: %s", exc)
            return None
        if frame.node != self.node:
            self.bus.counters.inc("frames_for_other_nodes")
            log.warning("refused stream %s: it is addressed to node %s, this is node %s", frame.sid, frame.node,
                        self.node)
            return self._error(frame.sid, 403, f"this is node {self.node}, not node {frame.node}")
        with self._lock:
            session = self.sessions.get(frame.sid)
        if frame.kind == Kind.OPEN:
            return None if session is not None else self._open(frame)  # a repeated open (QoS 1) is one stream
        if session is None:
            return None  # a stream that ended: frames still on the way
        session.heard = time.monotonic()
        if frame.kind == Kind.CREDIT:
            session.window.grant(frame.credit)
        elif frame.kind == Kind.DATA and isinstance(session, SocketSession):
            session.receive(frame)
        elif frame.kind in (Kind.CLOSE, Kind.ERROR):
            session.cancel(StreamEnded(frame.code or 499, frame.reason or "the cloud ended the stream"))
        return None

    def _error(self, sid: str, code: int, reason: str) -> list[RawSend]:
        return [RawSend(self.up, Frame(self.node, sid, Kind.ERROR, code=code, reason=reason).encode())]

    def _open(self, frame: Frame) -> Iterable[RawSend] | None:
        op = frame.req.get("op")
        request: LogRequest | MetricsRequest | ExecRequest | ForwardRequest
        try:
            if op in (EXEC, ATTACH):
                request = ExecRequest.parse(frame.req)
            elif op == PORT_FORWARD:
                request = ForwardRequest.parse(frame.req)
            elif op == METRICS:
                request = MetricsRequest.parse(frame.req)
            else:
                request = LogRequest.parse(frame.req)
        except BodyError as exc:
            self.bus.counters.inc("streams_refused")
            return self._error(frame.sid, 400, str(exc))
        with self._lock:
            if len(self.sessions) >= self.settings.max_streams:
                self.bus.counters.inc("streams_refused")
                return self._error(frame.sid, 429, f"node {self.node} has {len(self.sessions)} streams open, "
                                                   f"its limit; try again later")
            window = SendWindow(frame.credit)
            session: Session
            if isinstance(request, MetricsRequest):
                session = MetricsSession(self.api, self.node, frame.sid, request, window, self.publish, self.rates)
            elif isinstance(request, ExecRequest):
                session = ExecSession(self.api, self.node, frame.sid, request, window, self.publish)
            elif isinstance(request, ForwardRequest):
                session = ForwardSession(self.api, self.node, frame.sid, request, window, self.publish)
            else:
                session = LogSession(self.api, self.node, frame.sid, request, window, self.publish)
            self.sessions[frame.sid] = session
        self.bus.counters.inc("streams_opened")
        threading.Thread(target=self._serve, args=(session,), name=f"stream-{frame.sid[:8]}", daemon=True).start()
        return None

    def _serve(self, session: Session) -> None:
        try:
            session.run()
        except Exception:
            log.exception("stream %s failed", session.sid)
        finally:
            with self._lock:
                self.sessions.pop(session.sid, None)

    def _ping_loop(self) -> None:
        """Tell the cloud each open stream is alive; end those whose cloud end went silent."""
        idle = self.settings.idle_timeout_s
        while not self._closed.wait(idle / 3):
            with self._lock:
                sessions = list(self.sessions.values())
            for session in sessions:
                if time.monotonic() - session.heard > idle:
                    session.cancel(StreamEnded(504, f"the cloud was silent for {idle:g} s"))
                    continue
                try:
                    self.publish(session.frame(Kind.CREDIT))
                except Exception:
                    log.warning("stream %s: ping not sent", session.sid, exc_info=True)
