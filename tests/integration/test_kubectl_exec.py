"""``kubectl exec``, ``cp``, ``attach`` and ``port-forward`` of edge pods, end to end on the real parts: kubectl
1.32, kube-apiserver v1.20.2 (relaying the upgraded connection), the cloud stream server, the cloud broker, the
bridge, the node's stream end and podman's exec, attach and the pod's own network."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cloud.stream.component import APISERVER_KUBELET_CLIENT
from runtime.pki import CertificateAuthority
from runtime.streamflow import DEFAULT_WINDOW
from schemas import topics
from schemas.execrequest import ExecRequest
from schemas.streamframe import Frame, Kind, decode
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.integration.test_end_to_end import pod_manifest, running
from tests.integration.test_kubectl_logs import start_pod
from tests.support.cluster import CLOUD_PW, STREAMS_PER_NODE, Cluster, node_names
from tests.support.forwarding import PortForward

QUIET = "sleep 3600"
TRANSPORTS = {"websocket": {}, "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}}
"""kubectl 1.32 tries WebSocket (v5) first, which the API server relays; with the variable off it speaks SPDY."""


def kubectl_exec(cluster: Cluster, *args: str, stdin: bytes | None = None, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    argv = ["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace, *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_kubectl_exec_output_stderr_exit_codes_and_stdin(cluster_factory: Any, transport: str) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "box", node, QUIET)
    env = TRANSPORTS[transport]

    def kubectl_exec(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return _kubectl_exec(cluster, *args, stdin=stdin, env=env)

    done = kubectl_exec("exec", "box", "--", "sh", "-c", "echo out; echo err >&2; printf 'no newline'")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"out\nno newline"
    assert done.stderr == b"err\n"

    for code in (1, 3, 42):
        failed = kubectl_exec("exec", "box", "--", "sh", "-c", f"echo before; exit {code}")
        assert failed.returncode == code, failed.stderr
        assert failed.stdout == b"before\n"
        assert f"command terminated with exit code {code}".encode() in failed.stderr

    payload = os.urandom(3 * 1024 * 1024)
    digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
    summed = kubectl_exec("exec", "-i", "box", "--", "md5sum", stdin=payload)
    assert summed.returncode == 0, summed.stderr
    assert summed.stdout.split()[0].decode() == digest
    echoed = kubectl_exec("exec", "-i", "box", "--", "cat", stdin=payload)
    assert echoed.returncode == 0, echoed.stderr
    assert echoed.stdout == payload

    missing = kubectl_exec("exec", "box", "--", "no-such-command")
    assert missing.returncode != 0
    assert b"no-such-command" in missing.stderr


_kubectl_exec = kubectl_exec


def _api_server_tls(cluster: Cluster) -> ssl.SSLContext:
    """A client certificate like the API server's (its CN, from its CA)."""
    pki = cluster.api.ca_file.parent
    ca = CertificateAuthority((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    key, cert = ca.issue(APISERVER_KUBELET_CLIENT, client=True)
    (cluster.workdir / "as-api.key").write_bytes(key)
    (cluster.workdir / "as-api.crt").write_bytes(cert)
    context = ssl.create_default_context(cafile=str(cluster.api.ca_file))
    context.load_cert_chain(str(cluster.workdir / "as-api.crt"), str(cluster.workdir / "as-api.key"))
    return context


def _as_api_server(cluster: Cluster, path: str) -> tuple[int, dict[str, Any]]:
    """POST an upgrade request to the stream server as the API server does."""
    context = _api_server_tls(cluster)
    request = urllib.request.Request(f"https://127.0.0.1:{cluster.stream_port}{path}", method="POST", headers={
        "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_kubectl_exec_refusals(cluster_factory: Any) -> None:
    first, second = node_names(2)
    cluster: Cluster = cluster_factory([first, second])
    start_pod(cluster, "box", first, QUIET)
    start_pod(cluster, "elsewhere", second, QUIET)
    wrong = kubectl_exec(cluster, "exec", "box", "-c", "nope", "--", "true")  # the API server's own check
    assert wrong.returncode != 0
    assert b"container nope is not valid for pod box" in wrong.stderr

    # An unknown query parameter: refused before anything reaches a node, naming it.
    code, status = _as_api_server(cluster, f"/exec/{cluster.namespace}/box/main?command=true&output=1&bogus=1")
    assert code == 400
    assert "unknown query parameter bogus" in status["message"]

    # A pod that is not on the node the stream is opened to: the node itself refuses it (404).
    request = ExecRequest("exec", cluster.namespace, "elsewhere", "main", ("true",), stdout=True).as_map()
    broker = cluster.cloud_broker
    with TestClient(broker.host, broker.port, username="cloud", password=CLOUD_PW) as cloud:
        cloud.subscribe(topics.stream(first, topics.Direction.UP))
        cloud.publish(topics.stream(first, topics.Direction.DOWN),
                      Frame(first, "ef" * 16, Kind.OPEN, credit=DEFAULT_WINDOW, req=request).encode())
        answer = decode(cloud.expect().payload)
        assert (answer.kind, answer.code) == (Kind.ERROR, 404)
        assert answer.reason == f"pod {cluster.namespace}/elsewhere is not on node {first}"

    # Past the cap of streams per node: refused with 429, and the node still serves once one ends.
    argv = ["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace, "exec", "box", "--",
            "sh", "-c", "echo started; sleep 60"]
    holders = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
               for _ in range(STREAMS_PER_NODE)]
    try:
        for holder in holders:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"started\n"
        refused = kubectl_exec(cluster, "exec", "box", "--", "true")
        assert refused.returncode != 0
        assert b"streams open, the limit" in refused.stderr
        holders.pop().kill()
        wait_until(lambda: kubectl_exec(cluster, "exec", "box", "--", "true").returncode == 0, timeout=30,
                   what="an exec served again once a stream ended")
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(timeout=10)


def test_kubectl_cp_both_ways(cluster_factory: Any, tmp_path: Path) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "files", node, QUIET)
    original = tmp_path / "blob.bin"
    original.write_bytes(os.urandom(4 * 1024 * 1024 + 123))
    into = kubectl_exec(cluster, "cp", str(original), f"{cluster.namespace}/files:/tmp/blob.bin")
    assert into.returncode == 0, into.stderr
    back = tmp_path / "back.bin"
    out = kubectl_exec(cluster, "cp", f"{cluster.namespace}/files:/tmp/blob.bin", str(back))
    assert out.returncode == 0, out.stderr
    assert back.read_bytes() == original.read_bytes()


def _read_until(fd: int, wanted: bytes, timeout: float = 30.0) -> bytes:
    """What a terminal shows until ``wanted`` appears in it (AssertionError with what it showed, if not)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} not shown; the terminal showed {seen[-500:]!r}"
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            assert chunk, f"the terminal closed before {wanted!r}; it showed {seen[-500:]!r}"
            seen += chunk
    return seen


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _shows_size(controller: int, rows: int, cols: int) -> bool:
    marker = f"done{rows}x{cols}".encode()
    os.write(controller, b"stty size; echo done${COLUMNS:+}" + f"{rows}x{cols}".encode() + b"\r")
    shown = _read_until(controller, marker + b"\r\n")
    return f"\n{rows} {cols}\r".encode() in shown


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_kubectl_exec_with_a_terminal_and_resize(cluster_factory: Any, transport: str) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "term", node, QUIET)
    controller, terminal = pty.openpty()
    _set_size(terminal, 30, 100)
    shell = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace,
                              "exec", "-it", "term", "--", "sh"], stdin=terminal, stdout=terminal, stderr=terminal,
                             start_new_session=True, env={**os.environ, **TRANSPORTS[transport]})
    os.close(terminal)
    try:
        _read_until(controller, b"# ")  # the shell's prompt: it runs, as a user would see before typing
        os.write(controller, b"tty\r")
        _read_until(controller, b"/dev/pts/")
        # kubectl sends the first size as the command starts and podman applies it on its own request: asked
        # until it shows (a resize that never came would fail here).
        wait_until(lambda: _shows_size(controller, 30, 100), timeout=20, what="the first terminal size")
        _set_size(controller, 40, 120)
        shell.send_signal(signal.SIGWINCH)
        wait_until(lambda: _shows_size(controller, 40, 120), timeout=20, what="the terminal's new size")
        os.write(controller, b"exit 7\r")
        assert shell.wait(timeout=30) == 7
    finally:
        shell.kill()
        shell.wait(timeout=10)
        os.close(controller)


def test_kubectl_attach(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "talker", node, 'while read line; do echo "got $line"; done; sleep 3600',
              container={"stdin": True})
    attach = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace,
                               "attach", "-i", "talker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert attach.stdin is not None
        assert attach.stdout is not None
        # Lines go in until one comes back: the attach is up once kubectl's stdin reaches the container.
        answered = b""
        for n in range(50):
            attach.stdin.write(f"hello {n}\n".encode())
            attach.stdin.flush()
            readable, _, _ = select.select([attach.stdout], [], [], 0.5)
            if readable:
                answered = attach.stdout.readline()
                break
        assert re.fullmatch(rb"got hello \d+\n", answered), answered
        attach.stdin.write(b"world\n")
        attach.stdin.flush()
        wait_until(lambda: attach.stdout is not None and attach.stdout.readline() == b"got world\n", timeout=30,
                   what="the container's answer through the attach")
    finally:
        attach.kill()
        attach.wait(timeout=10)


WEB = ("mkdir -p /www /www2 && echo hello from 80 > /www/index.html && echo hello from 8080 > /www2/index.html"
       " && head -c 2000000 /dev/urandom > /www/big && httpd -p 8080 -h /www2 && httpd -f -p 80 -h /www")
FORWARD_TRANSPORTS = {"websocket": {}, "spdy": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}}


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        return bytes(response.read())


@pytest.mark.parametrize("transport", sorted(FORWARD_TRANSPORTS))
def test_kubectl_port_forward_several_ports_and_connections(cluster_factory: Any, transport: str) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "web", node, WEB)
    wait_until(lambda: _kubectl_exec(cluster, "exec", "web", "--", "test", "-s", "/www/big").returncode == 0,
               timeout=30, what="the pod's files written")
    digest = _kubectl_exec(cluster, "exec", "web", "--", "md5sum", "/www/big").stdout.split()[0].decode()
    forward = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace,
                                "port-forward", "pod/web", ":80", ":8080"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ, **FORWARD_TRANSPORTS[transport]})
    try:
        assert forward.stdout is not None
        local: dict[int, int] = {}
        while len(local) < 2:
            line = forward.stdout.readline()
            assert line, "kubectl port-forward ended before it listened"
            found = re.match(rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if found:
                local[int(found.group(2))] = int(found.group(1))
        assert _get(local[80], "/index.html") == b"hello from 80\n"
        assert _get(local[8080], "/index.html") == b"hello from 8080\n"
        # Several connections at once, on both ports: each gets its own bytes, whole.
        results: dict[str, bytes] = {}

        def fetch(name: str, port: int, path: str) -> None:
            results[name] = _get(port, path)

        fetchers = [threading.Thread(target=fetch, args=(f"big{n}", local[80], "/big")) for n in range(3)]
        fetchers.append(threading.Thread(target=fetch, args=("small", local[8080], "/index.html")))
        for fetcher in fetchers:
            fetcher.start()
        for fetcher in fetchers:
            fetcher.join(timeout=120)
        assert results["small"] == b"hello from 8080\n"
        for n in range(3):
            assert hashlib.md5(results[f"big{n}"], usedforsecurity=False).hexdigest() == digest
    finally:
        forward.kill()
        forward.wait(timeout=10)

    # A port nothing listens on: that connection fails with the node's reason, shown by kubectl.
    closed = PortForward(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace], "web",
                         9999, env={**os.environ, **FORWARD_TRANSPORTS[transport]})
    try:
        with socket.create_connection(("127.0.0.1", closed.local_port), timeout=60) as conn:
            assert conn.recv(100) == b""
        wait_until(lambda: b"cannot connect to port 9999 of pod" in closed.output, timeout=30,
                   what="kubectl to show why the connection failed")
    finally:
        closed.stop()


def test_exec_to_a_node_whose_link_is_down_fails_fast(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "cut", node, QUIET)
    assert kubectl_exec(cluster, "exec", "cut", "--", "true").returncode == 0
    _edge, link = cluster.nodes[node]
    link.down()
    down = f"node {node} is not connected: its link to the cloud is down".encode()
    wait_until(lambda: down in kubectl_exec(cluster, "exec", "cut", "--", "true").stderr, timeout=30,
               what="kubectl exec refused while the link is down")
    start = time.monotonic()
    refused = kubectl_exec(cluster, "exec", "cut", "--", "true")
    assert refused.returncode != 0
    assert down in refused.stderr
    assert time.monotonic() - start < 5
    link.up()
    wait_until(lambda: kubectl_exec(cluster, "exec", "cut", "--", "echo", "back").stdout == b"back\n", timeout=30,
               what="kubectl exec working again once the link is back")


UPGRADE = ("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
           "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n")


def _upgrade(cluster: Cluster, context: ssl.SSLContext, path: str) -> tuple[int, socket.socket]:
    """An exec's upgrade as the API server sends it: the answer's status and the connection (held open)."""
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", cluster.stream_port), timeout=60),
                               server_hostname="127.0.0.1")
    sock.sendall(UPGRADE.format(path=path).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"the stream server closed the connection after {head!r}"
        head += chunk
    return int(head.split()[1]), sock


def test_an_exec_flood_is_refused_past_the_cap_and_the_node_still_gets_its_pods(cluster_factory: Any) -> None:
    """100 execs at once to one node: the cap's worth are served, the rest refused with 429, and a pod created
    on the same node during the flood still starts (resource delivery does not wait behind streams)."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "busy", node, QUIET)
    context = _api_server_tls(cluster)
    path = f"/exec/{cluster.namespace}/busy/main?command=sleep&command=60&output=1"
    answers: list[tuple[int, socket.socket]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            answer = _upgrade(cluster, context, path)
        except (OSError, AssertionError) as exc:
            with lock:
                failures.append(repr(exc))
            return
        with lock:
            answers.append(answer)

    flood = [threading.Thread(target=one) for _ in range(100)]
    try:
        for thread in flood:
            thread.start()
        cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest("during", node, QUIET))
        for thread in flood:
            thread.join(timeout=120)
        assert not failures, f"{len(failures)} of the flood's connections got no answer: {failures}"
        codes = sorted(code for code, _sock in answers)
        assert codes == [101] * STREAMS_PER_NODE + [429] * (100 - STREAMS_PER_NODE), codes
        wait_until(lambda: running(cluster, "during"), timeout=60, what="a pod created during the flood Running")
    finally:
        for _code, sock in answers:
            sock.close()
    wait_until(lambda: kubectl_exec(cluster, "exec", "busy", "--", "true").returncode == 0, timeout=30,
               what="execs served again once the flood's connections closed")
