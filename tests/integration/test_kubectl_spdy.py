"""Real kubectl against cloud.stream's SPDY/3.1 codec: exec (exit codes, stdin, a TTY with resizes), attach and
port-forward, through tests/support/kubectl_stream_server.py.

kubectl is the one on PATH (v1.32). It first tries WebSocket, which the server refuses as a v1.20 kubelet
would, then speaks SPDY/3.1 with the same Go code (spdystream) a v1.20 API server uses towards a kubelet; the
tests check that the fallback is the path taken, so what they prove is the SPDY conversation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.processes import wait_until
from tests.support.forwarding import PortForward, echo_server, round_trip
from tests.support.kubectl_stream_server import KubectlStreamServer

pytestmark = pytest.mark.slow
TIMEOUT_S = 60.0


@pytest.fixture
def server() -> Iterator[KubectlStreamServer]:
    running = KubectlStreamServer().start()
    yield running
    running.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path) -> dict[str, str]:
    """An environment whose kubeconfig is empty, so that only ``--server`` says where to go."""
    empty = tmp_path / "kubeconfig"
    empty.write_text("")
    return {**os.environ, "KUBECONFIG": str(empty)}


def kubectl(server: KubectlStreamServer, env: dict[str, str], *args: str,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["kubectl", "--server", server.url, *args], input=stdin, capture_output=True, env=env,
                          timeout=TIMEOUT_S, check=False)


def test_exec_streams_stdout_and_stderr_and_exits_with_the_commands_code(
        server: KubectlStreamServer, kubeconfig: dict[str, str]) -> None:
    result = kubectl(server, kubeconfig, "exec", "web", "--", "sh", "-c", "echo hi; echo err >&2; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout == b"hi\n"
    assert b"err\n" in result.stderr
    assert b"command terminated with exit code 3" in result.stderr
    assert server.log.websocket_refused == 1  # kubectl tried WebSocket, was refused, fell back to SPDY
    assert server.log.upgraded == ["exec v4.channel.k8s.io"]


def test_exec_with_stdin_round_trips_megabytes_both_ways(
        server: KubectlStreamServer, kubeconfig: dict[str, str]) -> None:
    payload = os.urandom(3_000_000)  # far past the 64 KiB SPDY windows that kubectl never opens
    result = kubectl(server, kubeconfig, "exec", "-i", "web", "--", "sh", "-c", "cat; echo done >&2",
                     stdin=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    assert result.stderr == b"done\n"


def test_exec_of_a_command_that_cannot_run_fails_with_its_reason(
        server: KubectlStreamServer, kubeconfig: dict[str, str]) -> None:
    result = kubectl(server, kubeconfig, "exec", "web", "--", "/nonexistent/cmd")
    assert result.returncode == 1
    assert b"Internal error occurred: cannot run ['/nonexistent/cmd']" in result.stderr


def test_exec_with_a_terminal_sends_its_size_and_carries_input(
        server: KubectlStreamServer, kubeconfig: dict[str, str]) -> None:
    # script(1) gives kubectl a pseudo-terminal of a known size, so that it opens the resize stream. The
    # command waits for a line of input, which is typed only once the size has arrived: kubectl sends the
    # size on its own schedule, and a command that ended first would close the connection before it.
    inner = f"stty cols 100 rows 30; kubectl --server {server.url} exec -it web -- sh -c 'read line; echo got-$line'"
    terminal = subprocess.Popen(["script", "-qec", inner, "/dev/null"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=kubeconfig)
    try:
        wait_until(lambda: (100, 30) in server.log.resizes, timeout=TIMEOUT_S, what="the terminal's size")
        output, _ = terminal.communicate(b"hello\n", timeout=TIMEOUT_S)
    finally:
        terminal.kill()
        terminal.wait()
    assert terminal.returncode == 0, output
    assert b"got-hello" in output


def test_attach_passes_stdin_to_the_main_process(server: KubectlStreamServer, kubeconfig: dict[str, str]) -> None:
    result = kubectl(server, kubeconfig, "attach", "-i", "web", stdin=b"hello-attach\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello-attach\n"
    assert server.log.upgraded == ["attach v4.channel.k8s.io"]


@pytest.fixture
def echo_port() -> Iterator[int]:
    with echo_server() as port:
        yield port


def test_port_forward_carries_several_connections_at_once_both_ways(
        server: KubectlStreamServer, kubeconfig: dict[str, str], echo_port: int) -> None:
    forward = PortForward(["kubectl", "--server", server.url], "web", echo_port, kubeconfig)
    try:
        payloads = [os.urandom(2_000_000) for _ in range(3)]
        results: dict[int, bytes] = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, round_trip(forward.local_port,
                                                                                          payloads[i])))
                   for i in range(len(payloads))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S)
        assert [results.get(i) == payload for i, payload in enumerate(payloads)] == [True] * len(payloads)
        assert server.log.upgraded == ["portforward portforward.k8s.io"]
        assert forward.output.count(b"Handling connection for") == len(payloads)
    finally:
        forward.stop()


def test_port_forward_to_a_closed_port_reports_the_error_kubectl_shows(
        server: KubectlStreamServer, kubeconfig: dict[str, str]) -> None:
    # Bound but never listening: a connect is refused, and no other process (the other pytest worker's
    # free_port(), an ephemeral port) can take the port and answer in its place while the test runs, as one
    # could after a listener was merely closed (a CI run waited 60 s for the error that way).
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    forward = PortForward(["kubectl", "--server", server.url], "web", port, kubeconfig)
    try:
        assert round_trip(forward.local_port, b"hello") == b""
        wait_until(lambda: f"cannot connect to port {port}".encode() in forward.output, timeout=TIMEOUT_S,
                   what="kubectl to show the forwarding error")
    finally:
        forward.stop()
        closed.close()


def test_exec_over_websocket_v5_when_the_node_speaks_it(kubeconfig: dict[str, str]) -> None:
    """The same exec with the server answering kubectl's first try, WebSocket with v5.channel.k8s.io."""
    server = KubectlStreamServer(websocket=True).start()
    try:
        result = kubectl(server, kubeconfig, "exec", "web", "--", "sh", "-c", "echo hi; echo err >&2; exit 3")
        assert result.returncode == 3, result.stderr
        assert result.stdout == b"hi\n"
        assert b"err\n" in result.stderr
        payload = os.urandom(2_000_000)
        piped = kubectl(server, kubeconfig, "exec", "-i", "web", "--", "cat", stdin=payload)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == payload
        assert server.log.upgraded == ["exec v5.channel.k8s.io"] * 2
        assert server.log.websocket_refused == 0
    finally:
        server.stop()


def test_port_forward_through_the_websocket_tunnel_when_the_node_speaks_it(
        kubeconfig: dict[str, str], echo_port: int) -> None:
    """kubectl's first try for port-forward: the same SPDY conversation inside WebSocket binary messages."""
    server = KubectlStreamServer(websocket=True).start()
    forward = PortForward(["kubectl", "--server", server.url], "web", echo_port, kubeconfig)
    try:
        payload = os.urandom(2_000_000)
        assert round_trip(forward.local_port, payload) == payload
        assert server.log.upgraded == ["portforward SPDY/3.1+portforward.k8s.io"]
    finally:
        forward.stop()
        server.stop()
