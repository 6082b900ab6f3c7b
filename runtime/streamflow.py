"""Flow control for one tunnelled stream, the same at both ends (cloud stream server and node stream end).

Credit, as in HTTP/2 and SPDY/3.1 windows: the receiver grants bytes, the sender sends no more than it was
granted and waits for more. The receiver grants again only as its reader consumes, so what a stream holds
in memory on either side is bounded by its window, however slow the reader (a ``kubectl logs -f`` on a
phone line) and however fast the source (a container logging in a loop): the source is simply not read.

``SendWindow`` is the sender's side, ``Inbox`` the receiver's; both end with a ``StreamEnded`` that
carries an HTTP-like code and a reason, so that the cloud side can answer the API server with them.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

from runtime.errors import ComponentRuntimeError

DEFAULT_WINDOW = 2 * 1024 * 1024
"""Big enough to keep the link busy over a whole credit round trip (two brokers and the bridge each way: the
256 KiB it was left the sender idle most of the time, at 3-5 MB/s), small enough that 16 streams of a node
hold at most 32 MiB at each end."""


class Grants:
    """Credit a reader owes back, given in batches: once a quarter of the window was consumed, not per chunk, so
    that a stream costs one credit frame (a publish through both brokers) per quarter window instead of one per
    chunk. It cannot stall the sender: a sender out of credit has had the whole window consumed or waiting in
    the reader's inbox, so once the reader empties its inbox, what it owes is a full window, over the batch."""

    def __init__(self, window: int) -> None:
        self.batch = max(1, window // 4)
        self._owed = 0
        self._lock = threading.Lock()

    def consumed(self, size: int) -> int:
        """``size`` more bytes were consumed: the credit to send now (0: not yet)."""
        with self._lock:
            self._owed += size
            if self._owed < self.batch:
                return 0
            owed, self._owed = self._owed, 0
            return owed


class StreamEnded(ComponentRuntimeError, RuntimeError):
    """The stream is over: ``code`` 200 for a clean end, an HTTP error code otherwise, and why."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class StreamIdle(StreamEnded):
    """Nothing moved on the stream for its idle timeout."""

    def __init__(self, idle_s: float) -> None:
        super().__init__(504, f"the stream was idle for {idle_s:g} s")


class SendWindow:
    """The bytes the peer still lets us send."""

    def __init__(self, credit: int) -> None:
        self._credit = credit
        self._ended: StreamEnded | None = None
        self._cond = threading.Condition()

    def take(self, want: int, wait_s: float | None = None) -> int:
        """Up to ``want`` bytes of credit (at least 1), waiting for the peer to grant some: for ever by default,
        since a reader may pause for as long as it likes (``kubectl logs -f | less``); the stream's liveness is
        the pings' business, and ``end`` wakes the wait when the peer is gone."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._cond:
            while self._credit <= 0 and self._ended is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise StreamIdle(wait_s or 0.0)
                self._cond.wait(left)
            if self._ended is not None:
                raise self._ended
            granted = min(want, self._credit)
            self._credit -= granted
            return granted

    def grant(self, credit: int) -> None:
        with self._cond:
            self._credit += credit
            self._cond.notify_all()

    def end(self, ended: StreamEnded) -> None:
        """Wake the sender with ``ended`` (the peer went away or refused)."""
        with self._cond:
            if self._ended is None:
                self._ended = ended
            self._cond.notify_all()

    @property
    def credit(self) -> int:
        return self._credit


@dataclass
class _State:
    expected_seq: int = 0
    buffered: int = 0


class Inbox:
    """Data received for one stream, in order, never more than ``window`` bytes of it waiting."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._chunks: collections.deque[tuple[int, bytes]] = collections.deque()
        self._state = _State()
        self._ended: StreamEnded | None = None
        self._cond = threading.Condition()
        self.started = threading.Event()
        """Set by the first frame from the peer (data, close or error): the request was answered."""

    def put(self, seq: int, data: bytes, channel: int = 1) -> None:
        """A data frame (of ``channel``: an exec's stdout, stderr or stdin); out of order or over the granted
        window ends the stream (a protocol error, not a wait)."""
        with self._cond:
            if self._ended is not None:
                return
            state = self._state
            if seq != state.expected_seq:
                self._end(StreamEnded(502, f"stream frame {state.expected_seq} was lost (got {seq})"))
                return
            if state.buffered + len(data) > self.window:
                self._end(StreamEnded(502, f"the peer sent past its window of {self.window} bytes"))
                return
            state.expected_seq += 1
            state.buffered += len(data)
            self._chunks.append((channel, data))
            self.started.set()
            self._cond.notify_all()

    def end(self, ended: StreamEnded) -> None:
        """No more data: after what is buffered, ``get`` raises ``ended`` (code 200 for a clean close)."""
        with self._cond:
            self._end(ended)

    def _end(self, ended: StreamEnded) -> None:
        if self._ended is None:
            self._ended = ended
        self.started.set()
        self._cond.notify_all()

    def get(self, idle_s: float) -> bytes:
        """The next chunk, waiting up to ``idle_s``; the caller grants its length back once it has written it.
        Raises the stream's end once everything buffered was taken (StreamIdle when nothing came in time)."""
        return self.take(idle_s)[1]

    def take(self, idle_s: float) -> tuple[int, bytes]:
        """``get`` with the chunk's channel."""
        deadline = time.monotonic() + idle_s
        with self._cond:
            while not self._chunks:
                if self._ended is not None:
                    raise self._ended
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StreamIdle(idle_s)
                self._cond.wait(left)
            channel, chunk = self._chunks.popleft()
            self._state.buffered -= len(chunk)
            return channel, chunk

    @property
    def buffered(self) -> int:
        return self._state.buffered

    @property
    def ended(self) -> StreamEnded | None:
        return self._ended
