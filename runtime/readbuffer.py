"""A client socket that reads the broker's bytes in large chunks and hands them out as asked.

paho reads each MQTT packet with at least three ``recv`` calls (the command byte, each byte of the remaining
length, then the rest), and one more that finds nothing at the end: four system calls and their Python wrapping
for a 200-byte PUBLISH. Between the brokers and our components every hop is Python on paho, so that was a large
part of each hop's time (``edgehive bench twin``, py-spy: ``_sock_recv`` the largest entry of EventBus). Behind
this wrapper, one ``recv`` takes whatever the kernel holds (up to ``READ_SIZE``) and the packets in it are read
from memory.

paho waits in ``select`` only when the socket's ``pending()`` is 0 (as for TLS, whose library buffers too), so
bytes held here are read at once, never left waiting for the next packet to arrive.
"""

from __future__ import annotations

from typing import Any

READ_SIZE = 64 * 1024
"""What one system call may take: many packets of a burst, or one large envelope in a few calls."""


class ReadBufferedSocket:
    """``raw`` (a connected socket, plain or TLS) with its reads buffered; everything else is ``raw``'s."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes: from what is held, else from one read of the socket (b"" when it closed; its
        exceptions, a would-block among them, as the socket raises them)."""
        pos, buf = self._pos, self._buf
        if pos >= len(buf):
            fresh: bytes = self.raw.recv(max(size, READ_SIZE))
            if len(fresh) <= size:
                return fresh
            buf, pos = fresh, 0
        end = pos + size
        self._buf, self._pos = buf, end
        return buf[pos:end]  # fewer than ``size`` when fewer are held, as a socket's recv may return

    def pending(self) -> int:
        """Bytes that can be read without waiting: those held here, and the TLS layer's."""
        held = len(self._buf) - self._pos
        raw_pending = getattr(self.raw, "pending", None)
        return max(held, 0) + (raw_pending() if raw_pending is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
