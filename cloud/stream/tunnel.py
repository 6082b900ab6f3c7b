"""The cloud end of the stream tunnel: streams to nodes over their stream topics on the cloud broker.

A stream is opened only to a node whose link is up (CloudHub's retained session announcement says so):
streams have no outbox, so a request for a node that cannot be reached fails at once with 503 instead of
waiting for a link that may come back in hours. A node's streams fail the same way when its link goes
down. Frames are accepted from a node only for streams opened to that node: node A cannot answer, feed or
end a stream of node B even with a stolen stream id, since the broker's ACL already keeps it off B's topics
and the tunnel checks the topic it came on against the stream's node.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from runtime.bus import Bus
from runtime.streamflow import Grants, Inbox, SendWindow, StreamEnded
from schemas import topics
from schemas.envelope import Envelope, RawSend, Send
from schemas.fields import BodyError
from schemas.link import SessionNews
from schemas.streamframe import CHUNK, STDIN, Frame, FrameError, Kind, decode

log = logging.getLogger(__name__)


@dataclass
class CloudStream:
    """``inbox`` holds what the node sends; ``window`` is what the node lets us send (stdin, a forwarded
    connection's bytes): the node grants it, the same size as ours, once it has accepted the stream, and
    ``accepted`` is set then."""
    node: str
    sid: str
    inbox: Inbox
    grants: Grants
    heard: float = field(default_factory=time.monotonic)
    window: SendWindow = field(default_factory=lambda: SendWindow(0))
    accepted: threading.Event = field(default_factory=threading.Event)
    sent: int = 0  # data frames sent to the node: their seq
    exit_code: int | None = None  # an exec's, from the node's close

    def end(self, ended: StreamEnded) -> None:
        self.inbox.end(ended)
        self.window.end(ended)


class Tunnel:
    def __init__(self, bus: Bus, *, max_per_node: int, window: int, idle_s: float) -> None:
        self.bus = bus
        self.max_per_node = max_per_node
        self.window = window
        self.idle_s = idle_s
        self.links: dict[str, bool] = {}
        self.streams: dict[str, CloudStream] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pinger = threading.Thread(target=self._ping_loop, name="stream-ping", daemon=True)

    def start(self) -> None:
        self.bus.handle_raw(topics.all_streams(topics.Direction.UP), self.on_frame)
        self.bus.handle(topics.all_node_sessions(), self.on_session)
        self._pinger.start()

    def close(self) -> None:
        self._closed.set()

    def open(self, node: str, request: dict[str, object]) -> CloudStream:
        """A new stream to ``node``; StreamEnded (503 link down, 429 too many) when it cannot be opened."""
        if not self.links.get(node, False):
            raise StreamEnded(503, f"node {node} is not connected: its link to the cloud is down")
        with self._lock:
            open_now = sum(1 for s in self.streams.values() if s.node == node)
            if open_now >= self.max_per_node:
                self.bus.counters.inc("streams_refused")
                raise StreamEnded(429, f"node {node} has {open_now} streams open, the limit; try again later")
            stream = CloudStream(node, secrets.token_hex(16), Inbox(self.window), Grants(self.window))
            self.streams[stream.sid] = stream
        self.bus.counters.inc("streams_opened")
        self._send(Frame(node, stream.sid, Kind.OPEN, credit=self.window, req=dict(request)))
        return stream

    def grant(self, stream: CloudStream, consumed: int) -> None:
        """The reader took ``consumed`` bytes: the node may send that many more (told in batches: Grants)."""
        credit = stream.grants.consumed(consumed)
        if credit:
            self._send(Frame(stream.node, stream.sid, Kind.CREDIT, credit=credit))

    def send_data(self, stream: CloudStream, data: bytes, channel: int = STDIN) -> None:
        """Bytes for the node, no faster than it grants; empty ``data`` ends the channel. Raises the stream's
        end (StreamEnded) when it is over."""
        if not data:
            self._send(Frame(stream.node, stream.sid, Kind.DATA, seq=stream.sent, channel=channel))
            stream.sent += 1
        while data:
            size = stream.window.take(min(len(data), CHUNK))
            self._send(Frame(stream.node, stream.sid, Kind.DATA, seq=stream.sent, data=data[:size], channel=channel))
            stream.sent, data = stream.sent + 1, data[size:]

    def finish(self, stream: CloudStream, reason: str) -> None:
        """The cloud is done with the stream; the node is told to stop unless it ended the stream itself."""
        with self._lock:
            self.streams.pop(stream.sid, None)
        if stream.inbox.ended is None:
            stream.end(StreamEnded(499, reason))
            try:
                self._send(Frame(stream.node, stream.sid, Kind.ERROR, code=499, reason=reason))
            except Exception:
                log.warning("stream %s: could not tell node %s to stop", stream.sid, stream.node, exc_info=True)

    def _send(self, frame: Frame) -> None:
        self.bus.connection.publish(topics.stream(frame.node, topics.Direction.DOWN), frame.encode(), qos=1,
                                    timeout=10.0)

    def on_frame(self, topic: str, payload: bytes) -> Iterable[RawSend] | None:
        parsed = topics.parse_stream(topic)
        if parsed is None:
            return None
        node = parsed[0]
        try:
            frame = decode(payload)
        except FrameError as exc:
            self.bus.counters.inc("frames_refused")
            log.warning("refused a stream frame from node %s: %s", node, exc)
            return None
        with self._lock:
            stream = self.streams.get(frame.sid)
        if stream is None or stream.node != node or frame.node != node:
            if stream is not None:  # another node's stream: refused, and the stream itself is untouched
                self.bus.counters.inc("frames_for_other_nodes")
                log.warning("node %s sent a frame for stream %s of node %s: refused", node, frame.sid, stream.node)
            elif frame.kind == Kind.DATA:  # a stream we no longer hold: tell the node to stop sending
                return [RawSend(topics.stream(node, topics.Direction.DOWN),
                                Frame(node, frame.sid, Kind.ERROR, code=499, reason="no such stream").encode())]
            return None
        stream.heard = time.monotonic()
        if frame.kind == Kind.DATA:
            stream.inbox.put(frame.seq, frame.data, frame.channel)
        elif frame.kind == Kind.CREDIT and frame.credit:
            stream.window.grant(frame.credit)
            stream.accepted.set()
        elif frame.kind == Kind.CLOSE:
            stream.exit_code = frame.exit_code
            stream.end(StreamEnded(200, frame.reason))
        elif frame.kind == Kind.ERROR:
            stream.end(StreamEnded(frame.code or 502, frame.reason))
        return None

    def on_session(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        try:
            news = SessionNews.parse(envelope.body)
        except BodyError as exc:
            log.warning("refused a session announcement for %s: %s", envelope.node, exc)
            return None
        self.links[envelope.node] = news.connected
        if not news.connected:
            with self._lock:
                gone = [s for s in self.streams.values() if s.node == envelope.node]
            for stream in gone:
                stream.end(StreamEnded(503, f"node {envelope.node}'s link to the cloud went down"))
        return None

    def _ping_loop(self) -> None:
        """Tell each node its streams are alive; end streams whose node went silent."""
        while not self._closed.wait(self.idle_s / 3):
            with self._lock:
                streams = list(self.streams.values())
            for stream in streams:
                if time.monotonic() - stream.heard > self.idle_s:
                    stream.end(StreamEnded(504, f"node {stream.node} was silent for {self.idle_s:g} s"))
                    continue
                try:
                    self._send(Frame(stream.node, stream.sid, Kind.CREDIT))
                except Exception:
                    log.warning("stream %s: ping not sent", stream.sid, exc_info=True)

    def report(self) -> dict[str, object]:
        return {"streams": len(self.streams), "nodes_connected": sum(self.links.values())}
