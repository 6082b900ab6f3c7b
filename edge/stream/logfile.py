"""A container's log read straight from its ``k8s-file`` log, as the kubelet reads a CRI log file.

podman's REST log API costs about 60 ms of podman's CPU per MB plus our demultiplexing, and runs near 22 MB/s;
the file it reads from is on this machine, so the stream end reads it itself when it can see it (podman's
inspect names it; a journald log or a path out of sight falls back to the API, edge/stream/session.py).

Each line of the file is one record: ``<RFC 3339 time> <stdout|stderr> <F|P> <text>``; ``P`` is part of a
line whose rest follows in the next records, ``F`` ends one. What ``kubectl logs`` shows is the texts in the
order written, a newline after each ``F``, every record's time in front of it with ``--timestamps`` (the
kubelet's spelling: RFC3339Nano, then a space). The file is read in large chunks and, without timestamps,
the prefixes are cut from a whole chunk with one regular expression (in C): Python looks at single records
only for what needs them (timestamps, the start of ``--since``, partial lines, a malformed line, ``--tail``'s
backwards count). A malformed line is skipped and counted, as the kubelet skips one, never passed on raw.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20
"""One read of the file: large enough to cost little per MB, small enough that the stream's window (which the
caller honours before asking for more) bounds what is held."""
TAIL_BLOCK = 64 * 1024
MAX_RECORD = 1 << 20
"""A record longer than this without its newline is not one (conmon splits long lines into 8 KiB ``P``
records): it is dropped as malformed instead of being held without bound."""
POLL_S = 0.1
"""How often a followed log at its end looks for more (the latency a ``logs -f`` reader sees)."""
RUNNING_CHECK_S = 1.0
"""How often a followed log at its end asks whether its container still runs (a podman API call)."""

_TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"
_F_PREFIX = re.compile(rb"\n" + _TS + rb" (?:stdout|stderr) F ")
"""A whole record's prefix after the newline before it: the one pattern the fast path cuts."""
_RECORD = re.compile(rb"(" + _TS + rb") (?:stdout|stderr) ([A-Z](?::[A-Z])*) ")
_NEWLINE = b"\n"


@dataclass(frozen=True)
class LogOptions:
    """What of the log is shown: ``tail_lines`` last lines, records from ``since`` (seconds since the epoch)."""

    timestamps: bool = False
    tail_lines: int | None = None
    since: float | None = None


def kubelet_time(ts: bytes) -> bytes:
    """A record's time as the kubelet writes it (Go's RFC3339Nano): no trailing zeros in the fraction, ``Z``
    for a zero offset (conmon writes ``+00:00`` and nine digits)."""
    if ts.endswith(b"Z"):
        body, zone = ts[:-1], b"Z"
    else:
        body, zone = ts[:-6], ts[-6:]
        if zone in (b"+00:00", b"-00:00"):
            zone = b"Z"
    whole, dot, fraction = body.partition(b".")
    fraction = fraction.rstrip(b"0")
    return whole + (b"." + fraction if dot and fraction else b"") + zone


def epoch(ts: bytes) -> float | None:
    """Seconds since the epoch of a record's time; None if it is no time."""
    text = ts.decode("ascii", "replace")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    whole, dot, rest = text.partition(".")
    if dot:  # fromisoformat keeps microseconds: cut the fraction to six digits, keep the zone
        digits = len(rest) - 6
        rest = rest[:min(digits, 6)] + rest[digits:]
    try:
        return datetime.fromisoformat(whole + dot + rest).timestamp()
    except ValueError:
        return None


def _kind(record: bytes) -> bytes | None:
    """``F`` or ``P`` for a record (without its newline), None for a malformed one."""
    match = _RECORD.match(record)
    if match is None:
        return None
    return b"P" if b"P" in match.group(2).split(b":") else b"F"


def tail_start(fd: int, lines: int, block: int = TAIL_BLOCK) -> int:
    """Where in the file the last ``lines`` lines start, read backwards from its end one block at a time.

    A line is the records up to and including an ``F``; the partial records after the last ``F`` (a line still
    being written) count as one line, as ``tail -n`` counts a last line without its newline. Bytes after the
    last newline (a record being written) are no line yet. Malformed records count as nothing."""
    size = os.fstat(fd).st_size
    if lines <= 0:
        return size
    start, data = size, b""
    end = -1  # index in data of the newline ending the record looked at; -1: not found yet
    needed, trailing = lines, True
    while True:
        nl = data.rfind(_NEWLINE, 0, end if end >= 0 else len(data))
        if end < 0 and nl >= 0:
            end = nl  # the last whole record ends here
            continue
        if nl < 0 and start > 0:
            take = min(block, start)
            start -= take
            more = os.pread(fd, take, start)
            if len(more) != take:  # the file shrank under us: read from the start
                return 0
            data = more + (data[:end + 1] if end >= 0 else data)
            end = end + take if end >= 0 else -1
            continue
        if end < 0:
            return 0  # not one whole record
        kind = _kind(data[nl + 1:end])
        if kind == b"F":
            if needed == 0:
                return start + end + 1
            needed -= 1
            trailing = False
        elif kind == b"P" and trailing:
            needed -= 1
            trailing = False
        if nl < 0:
            return 0
        end = nl


class Converter:
    """Whole records (each ending in its newline) in, what ``kubectl logs`` shows of them out."""

    def __init__(self, options: LogOptions, path: str) -> None:
        self.timestamps = options.timestamps
        self.since = options.since
        self.path = path
        self.malformed = 0

    def convert(self, chunk: bytes) -> bytes:
        if self.since is not None:
            last = chunk.rfind(_NEWLINE, 0, len(chunk) - 1) + 1
            match = _RECORD.match(chunk, last)
            stamp = epoch(match.group(1)) if match is not None else None
            if stamp is not None and stamp < self.since:
                return b""  # the whole chunk is older (the log is in time order): no record of it is looked at
        elif not self.timestamps:
            cut, count = _F_PREFIX.subn(b"\n", b"\n" + chunk)
            if count == chunk.count(_NEWLINE):
                return cut[1:]
        return self._records(chunk)

    def _records(self, chunk: bytes) -> bytes:
        out = bytearray()
        for record in chunk.split(_NEWLINE)[:-1]:
            match = _RECORD.match(record)
            if match is None:
                self._malformed(record)
                continue
            if self.since is not None:
                stamp = epoch(match.group(1))
                if stamp is None:
                    self._malformed(record)
                    continue
                if stamp < self.since:
                    continue
                self.since = None  # in time order: every later record is shown
            if self.timestamps:
                out += kubelet_time(match.group(1)) + b" "
            out += record[match.end():]
            if b"P" not in match.group(2).split(b":"):
                out += _NEWLINE
        return bytes(out)

    def _malformed(self, record: bytes) -> None:
        self.malformed += 1
        if self.malformed == 1:
            log.warning("%s: skipping a line that is no CRI log record (time, stream, tag, text): %r",
                        self.path, record[:120])


class LogFile:
    """One container's log file, open: ``read`` yields what ``kubectl logs`` shows of it, chunk by chunk.

    Opened before anything is sent, so that a file out of sight (OSError) leaves the caller free to ask podman.
    Each chunk is asked for by the caller after the previous one was sent, so a slow reader holds the file's
    reading back; ``stop`` ends it between chunks and while a followed log waits for more."""

    def __init__(self, path: str, options: LogOptions, stop: threading.Event, read_size: int = READ_SIZE) -> None:
        self.path = path
        self.options = options
        self.stop = stop
        self.read_size = read_size
        self.converter = Converter(options, path)
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, follow: bool = False, running: Callable[[], bool] = lambda: False,
             poll_s: float = POLL_S, running_check_s: float = RUNNING_CHECK_S) -> Iterator[bytes]:
        """The log from the start ``tail_lines`` gives, to its end; with ``follow``, on as the file grows (a
        rotated or truncated file is read again from its start) until ``running`` says the container stopped
        and the file is drained, or ``stop`` is set."""
        try:
            if self.options.tail_lines is not None:
                os.lseek(self._fd, tail_start(self._fd, self.options.tail_lines), os.SEEK_SET)
            carry = b""
            ending = False
            asked = -running_check_s  # ask at the first end reached
            while not self.stop.is_set():
                data = os.read(self._fd, self.read_size)
                if data:
                    data, carry = self._whole(carry + data if carry else data)
                    out = self.converter.convert(data) if data else b""
                    if out:
                        yield out
                    continue
                if not follow or ending:
                    break
                if self._replaced():
                    carry = b""
                    continue
                if time.monotonic() - asked >= running_check_s:
                    asked = time.monotonic()
                    if not running():
                        ending = True  # one more read drains what it wrote before it stopped
                        continue
                self.stop.wait(poll_s)
            if carry and not follow and not self.stop.is_set():
                out = self.converter.convert(carry + _NEWLINE)  # a last record cut short of its newline
                if out:
                    yield out
        finally:
            self.close()

    def _whole(self, data: bytes) -> tuple[bytes, bytes]:
        """Whole records of ``data``, and the start of the next one (kept for the next read, within bounds)."""
        cut = data.rfind(_NEWLINE) + 1
        rest = data[cut:]
        if len(rest) > MAX_RECORD:
            self.converter._malformed(rest)
            rest = b""
        return data[:cut], rest

    def _replaced(self) -> bool:
        """Whether the file was rotated (another file at the path: conmon renames a new one over it) or
        truncated (seen when it is shorter than what was read: one that grew past that again before this look
        cannot be told from one that grew, as for ``tail -F``); if so, it is read again from its start."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # between the old file's removal and the new one's arrival
        mine = os.fstat(self._fd)
        if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
            os.close(self._fd)
            self._fd = fd
            log.info("%s: the log was rotated; reading the new file from its start", self.path)
            return True
        if mine.st_size < os.lseek(self._fd, 0, os.SEEK_CUR):
            os.lseek(self._fd, 0, os.SEEK_SET)
            log.info("%s: the log was truncated; reading it again from its start", self.path)
            return True
        return False
