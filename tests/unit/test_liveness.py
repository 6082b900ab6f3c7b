"""The supervisor's liveness probe: a child that is alive but no longer answers is killed, to be restarted."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import UnixStreamServer

import pytest

from edgehive.launcher import Child, Supervisor
from edgehive.podmanprobe import PODS_PATH, pods_answered


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def probed(proc: subprocess.Popen[bytes], answers: list[bool]) -> Child:
    child = Child("podman", ["sleep", "60"], alive=lambda: answers.pop(0), alive_every_s=10.0, alive_failures=3)
    child.proc, child.started_at = proc, 0.0
    return child


def test_a_child_failing_its_probe_three_times_in_a_row_is_killed(sleeper: subprocess.Popen[bytes]) -> None:
    child = probed(sleeper, [False, False, True, False, False, False])
    supervisor = Supervisor([child])
    for at in (10.0, 20.0, 30.0, 40.0, 50.0):  # two failures, an answer (the count starts again), two failures
        supervisor.probe(child, at)
    assert sleeper.poll() is None
    assert child.failed_probes == 2
    supervisor.probe(child, 60.0)
    assert sleeper.wait(timeout=10) == -9


def test_a_child_is_not_probed_before_it_has_run_one_period(sleeper: subprocess.Popen[bytes]) -> None:
    child = probed(sleeper, [])  # a probe asked now would fail on the empty list
    Supervisor([child]).probe(child, 9.0)
    assert child.failed_probes == 0
    assert sleeper.poll() is None


def test_a_probe_that_raises_counts_as_a_failure(sleeper: subprocess.Popen[bytes]) -> None:
    child = probed(sleeper, [])
    Supervisor([child]).probe(child, 10.0)  # pop from an empty list: IndexError
    assert child.failed_probes == 1


class _Unix(UnixStreamServer, ThreadingHTTPServer):
    daemon_threads = True


def serve(path: Path, block: threading.Event) -> _Unix:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            block.wait(5)
            body = b"[]" if self.path == PODS_PATH else b"not found"
            self.send_response(200 if self.path == PODS_PATH else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "unix"

        def log_message(self, *_args: object) -> None:
            pass

    server = _Unix(str(path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_podman_probe_wants_the_pods_listed_in_time(tmp_path: Path) -> None:
    path, block = tmp_path / "podman.sock", threading.Event()
    assert not pods_answered(path, 1.0)  # nothing listens
    server = serve(path, block)
    try:
        assert not pods_answered(path, 0.5)  # listens, but the list does not come: a deadlocked service
        block.set()
        assert pods_answered(path, 5.0)
    finally:
        block.set()
        server.shutdown()
        server.server_close()
