"""A numbered message stream with end-to-end acknowledgements, for testing the link under faults.

Each side sends ``D<seq>`` data messages and cumulative ``A<seq>`` acks on its
outgoing link topic. The receiver accepts only the next expected number (go-back-N),
so what it accepts is complete and in order by construction; what the test
measures is whether it all arrives, and what it cost: duplicates (the transport
delivered a message twice), gaps (one was lost and had to be sent again) and
resends. With ``resend=False`` the sender never repeats itself, so completeness
proves the transport alone lost nothing.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from functools import partial

from runtime.connection import Connection, Incoming

_DATA, _ACK = b"D", b"A"
_PAD = b"x" * 100


@dataclass
class Stats:
    accepted: int = 0
    duplicates: int = 0
    gaps: int = 0
    resent: int = 0
    first_seen_out_of_order: int = 0
    seen: set[int] = field(default_factory=set, repr=False)


class StreamEnd:
    """One end: sends ``total`` messages on ``out_topic`` and receives the peer's on ``in_topic``."""

    def __init__(self, name: str, connection: Connection, out_topic: str, in_topic: str, total: int, *,
                 ahead: int = 1000, resend: bool = True, resend_after: float = 8.0) -> None:
        self.name = name
        self.connection = connection
        self.out_topic = out_topic
        self.total = total
        self.ahead = ahead
        self.resend = resend
        self.resend_after = resend_after
        self.stats = Stats()
        self.expected = 0  # next sequence number to accept from the peer
        self.peer_acked = -1  # highest of ours the peer has accepted
        self._highest_first_seen = -1
        self._progress = threading.Condition()
        self._last_ack_progress = time.monotonic()
        self._stop = threading.Event()
        connection.subscribe(in_topic)
        connection.on_message(self._on_message)
        self._threads = [threading.Thread(target=self._send_loop, daemon=True, name=f"{name}-send"),
                         threading.Thread(target=self._ack_loop, daemon=True, name=f"{name}-ack")]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._progress:
            self._progress.notify_all()

    @property
    def done(self) -> bool:
        return self.expected >= self.total and self.peer_acked >= self.total - 1

    def _on_message(self, incoming: Incoming) -> None:
        kind, seq = incoming.payload[:1], struct.unpack(">q", incoming.payload[1:9])[0]
        with self._progress:
            if kind == _ACK:
                if seq > self.peer_acked:
                    self.peer_acked = seq
                    self._last_ack_progress = time.monotonic()
                    self._progress.notify_all()
            elif seq == self.expected:
                self.expected += 1
                self.stats.accepted += 1
            elif seq < self.expected:
                self.stats.duplicates += 1
            else:
                self.stats.gaps += 1
            if kind == _DATA and seq not in self.stats.seen:
                self.stats.seen.add(seq)
                if seq < self._highest_first_seen:
                    self.stats.first_seen_out_of_order += 1
                self._highest_first_seen = max(self._highest_first_seen, seq)
        incoming.ack()

    def _send_loop(self) -> None:
        next_seq = 0
        while not self._stop.is_set():
            with self._progress:
                self._progress.wait_for(partial(self._ready, next_seq), timeout=0.5)
                if self._stop.is_set():
                    return
                if self._resend_due(next_seq):
                    self.stats.resent += next_seq - (self.peer_acked + 1)
                    next_seq = self.peer_acked + 1
                    self._last_ack_progress = time.monotonic()
                if next_seq >= self.total or next_seq > self.peer_acked + self.ahead:
                    continue
            self.connection.publish(self.out_topic, _DATA + struct.pack(">q", next_seq) + _PAD)
            next_seq += 1

    def _ready(self, next_seq: int) -> bool:
        return (self._stop.is_set() or (next_seq < self.total and next_seq <= self.peer_acked + self.ahead)
                or self._resend_due(next_seq))

    def _resend_due(self, next_seq: int) -> bool:
        return (self.resend and self.peer_acked + 1 < next_seq
                and time.monotonic() - self._last_ack_progress > self.resend_after)

    def _ack_loop(self) -> None:
        # Acks can be lost too: repeat the current one every second even when it has not moved.
        last_sent, last_time = -1, 0.0
        while not self._stop.wait(0.05):
            current = self.expected - 1
            if current != last_sent or time.monotonic() - last_time > 1.0:
                self.connection.publish(self.out_topic, _ACK + struct.pack(">q", current))
                last_sent, last_time = current, time.monotonic()
