"""A container's log read from its k8s-file log (edge/stream/logfile.py) on real files, and the stream end's
choice between that file and podman's log API (edge/stream/session.py)."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.stream.logfile import MAX_RECORD, LogFile, LogOptions, epoch, kubelet_time, tail_start
from edge.stream.podmanapi import PodContainer, PodmanApi
from edge.stream.session import LogSession
from runtime.streamflow import SendWindow, StreamEnded
from schemas.streamframe import Frame, Kind
from schemas.streamrequest import LogRequest
from tests.fixtures.processes import wait_until

T = "2026-12-04T19:25:2{}.{}+00:00"


def rec(second: int, text: str, tag: str = "F", stream: str = "stdout", fraction: str = "749458378") -> str:
    return f"{T.format(second, fraction)} {stream} {tag} {text}\n"


# As conmon wrote it: a line, a partial line interleaved with stderr, a line that ends empty, an unended part.
LOG = (rec(0, "line 1") + rec(1, "part", "P") + rec(1, "err", stream="stderr") + rec(2, "ial")
       + rec(3, "no", "P") + rec(3, "eol", "P") + rec(4, "") + rec(5, "x" * 100) + rec(6, "end", "P"))
SHOWN = "line 1\nparterr\nial\nnoeol\n" + "x" * 100 + "\nend"


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def read(path: Path, read_size: int = 1 << 20, **options: object) -> bytes:
    return b"".join(LogFile(str(path), LogOptions(**options), threading.Event(),  # type: ignore[arg-type]
                            read_size=read_size).read())


@pytest.mark.parametrize("read_size", [7, 64, 1 << 20])
def test_records_become_the_lines_kubectl_shows_partial_lines_joined(tmp_path: Path, read_size: int) -> None:
    assert read(write(tmp_path / "ctr.log", LOG), read_size).decode() == SHOWN


def test_timestamps_are_the_kubelets_rfc3339nano_before_every_record(tmp_path: Path) -> None:
    path = write(tmp_path / "ctr.log", rec(0, "a") + rec(1, "b", fraction="120000000") + rec(2, "c", "P",
                                                                                                 fraction="000000000")
                 + "2026-12-04T21:25:23.5+02:00 stderr F d\n")
    assert read(path, timestamps=True).decode() == (
        "2026-12-04T19:25:20.749458378Z a\n2026-12-04T19:25:21.12Z b\n2026-12-04T19:25:22Z c"
        "2026-12-04T21:25:23.5+02:00 d\n")
    assert kubelet_time(b"2026-12-04T19:25:20.100Z") == b"2026-12-04T19:25:20.1Z"


X = "x" * 100


@pytest.mark.parametrize(("lines", "shown"), [
    (0, ""), (1, "end"), (2, X + "\nend"), (3, "noeol\n" + X + "\nend"), (4, "ial\nnoeol\n" + X + "\nend"),
    (5, SHOWN[len("line 1\n"):]), (6, SHOWN), (100, SHOWN)])
def test_tail_counts_whole_lines_and_the_unended_last_one(tmp_path: Path, lines: int, shown: str) -> None:
    assert read(write(tmp_path / "ctr.log", LOG), tail_lines=lines).decode() == shown


def test_tail_reads_backwards_across_blocks(tmp_path: Path) -> None:
    path = write(tmp_path / "ctr.log", "".join(rec(i % 10, f"line {i}") for i in range(5000)))
    fd = os.open(path, os.O_RDONLY)
    try:
        start = tail_start(fd, 1234, block=100)
    finally:
        os.close(fd)
    assert path.read_bytes()[start:].decode().splitlines()[0].endswith(" line 3766")
    assert read(path, tail_lines=2).decode() == "line 4998\nline 4999\n"


def test_since_shows_records_from_that_time(tmp_path: Path) -> None:
    path = write(tmp_path / "ctr.log", "".join(rec(i, f"line {i}") for i in range(10)))
    at = datetime(2026, 12, 4, 19, 25, 26, tzinfo=UTC).timestamp()
    assert read(path, since=at).decode() == "line 6\nline 7\nline 8\nline 9\n"
    assert read(path, read_size=40, since=at).decode() == "line 6\nline 7\nline 8\nline 9\n"
    assert read(path, since=at + 100).decode() == ""
    assert read(path, since=at, tail_lines=2, timestamps=True).decode() == (
        "2026-12-04T19:25:28.749458378Z line 8\n2026-12-04T19:25:29.749458378Z line 9\n")
    assert epoch(b"2026-12-04T19:25:26.749458378+00:00") == pytest.approx(at + 0.749458)
    assert epoch(b"2026-12-04T21:25:26Z") == at + 7200
    assert epoch(b"not a time") is None


def test_a_malformed_line_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "ctr.log", rec(0, "a") + "garbage without a prefix\n" + "2026-13-99 stdout F b\n"
                 + rec(1, "c") + "\n")
    file = LogFile(str(path), LogOptions(), threading.Event())
    assert b"".join(file.read()) == b"a\nc\n"
    assert file.converter.malformed == 3
    assert "skipping a line that is no CRI log record" in caplog.text
    assert read(path, timestamps=True).decode() == "2026-12-04T19:25:20.749458378Z a\n" \
                                                    "2026-12-04T19:25:21.749458378Z c\n"
    assert read(path, tail_lines=1).decode() == "c\n"


def test_an_endless_record_is_dropped_not_held(tmp_path: Path) -> None:
    path = write(tmp_path / "ctr.log", rec(0, "a") + "y" * (MAX_RECORD + 10) + "\n" + rec(1, "b"))
    file = LogFile(str(path), LogOptions(), threading.Event(), read_size=1 << 16)
    assert b"".join(file.read()) == b"a\nb\n"
    assert file.converter.malformed >= 1


class Follower:
    """A followed log read on a thread of its own, what it yielded gathered as it comes."""

    def __init__(self, path: Path, running: Callable[[], bool], **options: object) -> None:
        self.stop = threading.Event()
        self.file = LogFile(str(path), LogOptions(**options), self.stop)  # type: ignore[arg-type]
        self.got = bytearray()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(running,), daemon=True)
        self.thread.start()

    def _run(self, running: Callable[[], bool]) -> None:
        for piece in self.file.read(True, running, poll_s=0.01, running_check_s=0.05):
            self.got += piece
        self.done.set()

    def saw(self, text: str) -> None:
        wait_until(lambda: self.got.decode() == text, timeout=10, what=f"the follower to show {text!r}")


def test_follow_reads_as_the_file_grows_and_ends_once_the_container_stopped_and_it_is_drained(
        tmp_path: Path) -> None:
    path = write(tmp_path / "ctr.log", rec(0, "one"))
    alive = threading.Event()
    alive.set()
    follower = Follower(path, alive.is_set, tail_lines=1)
    follower.saw("one\n")
    with path.open("a") as log:
        log.write(rec(1, "tw", "P"))
        log.flush()
        follower.saw("one\ntw")
        log.write(rec(2, "o")[:20])  # a record caught half written is held until its newline
        log.flush()
        log.write(rec(2, "o")[20:] + rec(3, "three"))
    follower.saw("one\ntwo\nthree\n")
    assert not follower.done.is_set()
    with path.open("a") as log:
        log.write(rec(4, "last words"))
    alive.clear()
    assert follower.done.wait(10)
    assert follower.got.decode() == "one\ntwo\nthree\nlast words\n"


def test_follow_reads_a_rotated_or_truncated_file_from_its_start(tmp_path: Path) -> None:
    path = write(tmp_path / "ctr.log", rec(0, "old 1") + rec(1, "old 2"))
    follower = Follower(path, lambda: True)
    follower.saw("old 1\nold 2\n")
    write(tmp_path / "ctr.log.tmp", rec(2, "new 1")).rename(path)  # conmon's rotation: a new file renamed over
    follower.saw("old 1\nold 2\nnew 1\n")
    # Truncated and written again: seen as such when the file is now shorter than what was read of it (a file
    # that grew past that again before the reader looked is indistinguishable from one that grew, as for tail -F)
    write(path, rec(3, "a"))
    follower.saw("old 1\nold 2\nnew 1\na\n")
    follower.stop.set()
    assert follower.done.wait(10)


def test_stop_ends_a_followed_log_that_waits_for_more(tmp_path: Path) -> None:
    follower = Follower(write(tmp_path / "ctr.log", rec(0, "a")), lambda: True)
    follower.saw("a\n")
    follower.stop.set()
    assert follower.done.wait(10)


class FakeApi(PodmanApi):
    """podman as the log session sees it: one container, its log file (or none), its log API's answer."""

    def __init__(self, log_path: str | None, api_log: bytes = b"from the api\n") -> None:
        super().__init__("http://127.0.0.1:1", "edge-1")
        self.log_path = log_path
        self.api_log = api_log
        self.api_reads = 0

    def pod_containers(self, namespace: str, pod: str) -> list[PodContainer]:
        return [PodContainer("c1", "main", 0, "running")]

    def log_file(self, container_id: str) -> str | None:
        return self.log_path

    def running(self, container_id: str) -> bool:
        return False

    def logs(self, container_id: str, params: dict[str, str], stop: threading.Event,
             register: Callable[[http.client.HTTPConnection], None]) -> Iterator[bytes]:
        self.api_reads += 1
        yield self.api_log


def serve(api: FakeApi, credit: int = 1 << 20, **options: object) -> tuple[bytes, list[Frame]]:
    frames: list[Frame] = []
    request = LogRequest("default", "web", "main", **options)  # type: ignore[arg-type]
    LogSession(api, "edge-1", "ab" * 16, request, SendWindow(credit), frames.append).run()
    return b"".join(f.data for f in frames if f.kind is Kind.DATA), frames


def test_the_session_reads_the_file_with_every_option(tmp_path: Path) -> None:
    api = FakeApi(str(write(tmp_path / "ctr.log", LOG)))
    assert serve(api)[0].decode() == SHOWN
    assert serve(api, limit_bytes=10)[0].decode() == SHOWN[:10]
    assert serve(api, tail_lines=1, timestamps=True)[0].decode() == "2026-12-04T19:25:26.749458378Z end"
    assert serve(api, follow=True)[0].decode() == SHOWN  # the container stopped: the followed log ends
    assert serve(api, since_time=datetime(2026, 12, 4, 19, 25, 25, tzinfo=UTC).timestamp())[0] \
        == b"x" * 100 + b"\nend"
    assert api.api_reads == 0
    assert serve(api)[1][-1].kind is Kind.CLOSE


@pytest.mark.parametrize("where", ["no file named", "a file out of sight"])
def test_the_session_falls_back_to_podmans_log_api(tmp_path: Path, where: str) -> None:
    api = FakeApi(None if where == "no file named" else str(tmp_path / "elsewhere" / "ctr.log"))
    data, frames = serve(api)
    assert data == b"from the api\n"
    assert api.api_reads == 1
    assert frames[-1].kind is Kind.CLOSE


def test_a_slow_reader_holds_the_file_back(tmp_path: Path) -> None:
    """Flow control: with its credit spent the session reads no further; cancelling it ends the stream."""
    path = write(tmp_path / "ctr.log", "".join(rec(i % 10, "z" * 1000) for i in range(5000)))
    frames: list[Frame] = []
    window = SendWindow(64 * 1024)
    session = LogSession(FakeApi(str(path)), "edge-1", "cd" * 16, LogRequest("default", "web", "main", follow=True),
                         window, frames.append)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    wait_until(lambda: window.credit == 0, timeout=10, what="the session to spend its credit")
    assert sum(len(f.data) for f in frames) == 64 * 1024
    session.cancel(StreamEnded(499, "the reader went away"))
    thread.join(10)
    assert not thread.is_alive()
    assert sum(len(f.data) for f in frames) == 64 * 1024
