"""podman's REST exec and attach, on a hijacked connection, with the standard library.

Facts of podman's API (v4, the Docker-compatible semantics): ``POST /containers/{id}/exec`` creates an exec
session (201, its Id; 409 when the container is not running); ``POST /exec/{id}/start`` with
``Connection: Upgrade`` / ``Upgrade: tcp`` answers 101 (or 200) and then the connection is the command's
stdin one way and its output the other: raw with a terminal, else multiplexed in frames of
[stream (1 stdout, 2 stderr), 0, 0, 0, size (big-endian u32)] + bytes. Shutting down the writing half ends
the command's stdin. ``GET /exec/{id}/json`` has the exit code once it is not Running;
``POST /exec/{id}/resize?h=&w=`` sizes its terminal. Attach is the same on
``POST /containers/{id}/attach?stream=true&stdin=..&stdout=..&stderr=..``, ``/containers/{id}/resize``.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from urllib.parse import quote, urlencode

from edge.stream.podmanapi import API, PodmanApi, PodmanApiError

_HEADER = struct.Struct(">BxxxI")
MAX_HEAD = 64 * 1024
EXIT_WAIT_S = 10.0


def _socket(api: PodmanApi) -> socket.socket:
    url = api.url
    try:
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30.0)
            sock.connect(url.path)
            return sock
        return socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=30.0)
    except OSError as exc:
        raise PodmanApiError(503, f"podman is not answering at {url.geturl()}: {exc}") from exc


def _request(api: PodmanApi, method: str, path: str, body: object | None = None, *,
             upgrade: bool = False, close: bool = False) -> tuple[int, bytes, socket.socket]:
    """Send one request on a new connection; the status, what came after the head (a body, or the first
    bytes of a hijacked stream), and the connection."""
    sock = _socket(api)
    raw = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", "Host: podman", f"Content-Length: {len(raw)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    if upgrade:
        head += ["Connection: Upgrade", "Upgrade: tcp"]
    elif close:
        head.append("Connection: close")
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
        buffered = b""
        while b"\r\n\r\n" not in buffered:
            chunk = sock.recv(65536)
            if not chunk or len(buffered) > MAX_HEAD:
                raise OSError("podman closed the connection before it answered")
            buffered += chunk
    except OSError as exc:
        sock.close()
        raise PodmanApiError(503, f"podman failed the request {method} {path}: {exc}") from exc
    head_text, rest = buffered.split(b"\r\n\r\n", 1)
    status = int(head_text.split(b" ", 2)[1])
    return status, rest, sock


def call(api: PodmanApi, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    """A plain request: its status and JSON answer (podman closes the connection after it, as asked)."""
    status, rest, sock = _request(api, method, path, body, close=True)
    with sock:
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except OSError:
            pass
    try:
        return status, json.loads(_unchunk(rest)) if rest.strip() else None
    except ValueError:
        return status, rest.decode(errors="replace")


def _unchunk(body: bytes) -> bytes:
    """The body of a chunked answer (podman sends JSON answers chunked or with a length)."""
    text = body.strip()
    if text[:1] in (b"{", b"["):
        return text
    out, rest = bytearray(), body
    while rest:
        size_text, _, rest = rest.partition(b"\r\n")
        size = int(size_text.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)


def _message(answer: object) -> str:
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("cause") or answer)
    return str(answer)[:300]


def create_exec(api: PodmanApi, container_id: str, command: list[str], *, stdin: bool, stdout: bool, stderr: bool,
                tty: bool) -> str:
    status, answer = call(api, "POST", f"{API}/containers/{quote(container_id)}/exec", {
        "AttachStdin": stdin, "AttachStdout": stdout, "AttachStderr": stderr, "Tty": tty, "Cmd": command})
    if status != 201 or not isinstance(answer, dict) or not answer.get("Id"):
        code = 400 if status == 409 else 502  # 409: the container is not running
        raise PodmanApiError(code, f"cannot run {command[0] if command else 'the command'} in the container: "
                                   f"{_message(answer)}")
    return str(answer["Id"])


def start_exec(api: PodmanApi, exec_id: str, *, tty: bool) -> tuple[socket.socket, bytes]:
    """The hijacked connection of a started exec session, and the output bytes that came with its answer."""
    status, rest, sock = _request(api, "POST", f"{API}/exec/{quote(exec_id)}/start",
                                  {"Detach": False, "Tty": tty}, upgrade=True)
    if status not in (101, 200):
        sock.close()
        raise PodmanApiError(502, f"podman did not start the command: {status} {rest[:300].decode(errors='replace')}")
    sock.settimeout(None)
    return sock, rest


def attach(api: PodmanApi, container_id: str, *, stdin: bool, stdout: bool, stderr: bool
           ) -> tuple[socket.socket, bytes]:
    query = urlencode({"stream": "true", "logs": "false", "stdin": str(stdin).lower(),
                       "stdout": str(stdout).lower(), "stderr": str(stderr).lower()})
    status, rest, sock = _request(api, "POST", f"{API}/containers/{quote(container_id)}/attach?{query}",
                                  upgrade=True)
    if status not in (101, 200):
        sock.close()
        code = 400 if status == 409 else 502
        raise PodmanApiError(code, f"cannot attach to the container: {rest[:300].decode(errors='replace')}")
    sock.settimeout(None)
    return sock, rest


def exec_exit_code(api: PodmanApi, exec_id: str) -> int | None:
    """The command's exit code once podman has it (it may lag the end of the output a little)."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while True:
        status, answer = call(api, "GET", f"{API}/exec/{quote(exec_id)}/json")
        if status == 200 and isinstance(answer, dict) and not answer.get("Running"):
            code = answer.get("ExitCode")
            return int(code) if isinstance(code, int) else None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def resize(api: PodmanApi, *, exec_id: str = "", container_id: str = "", width: int, height: int) -> str:
    """Size the terminal of an exec session or of a container; what went wrong, if anything (a terminal
    that keeps its old size is no reason to end the session)."""
    target = f"exec/{quote(exec_id)}" if exec_id else f"containers/{quote(container_id)}"
    try:
        status, answer = call(api, "POST", f"{API}/{target}/resize?{urlencode({'h': height, 'w': width})}")
    except PodmanApiError as exc:
        return str(exc)
    return "" if status in (200, 201, 204) else f"podman answered {status}: {_message(answer)}"


def demux(sock: socket.socket, first: bytes, tty: bool) -> Iterator[tuple[int, bytes]]:
    """The output of a hijacked connection as (channel, bytes): 1 stdout, 2 stderr; a terminal's is all 1.
    Consecutive frames of one channel that came together go as one piece (a command writing short lines
    would otherwise make one tunnel frame per line)."""
    pending = first
    while True:
        if tty:
            if pending:
                yield 1, pending
                pending = b""
        else:
            channel, merged = 0, bytearray()
            while len(pending) >= _HEADER.size:
                kind, size = _HEADER.unpack_from(pending)
                if len(pending) < _HEADER.size + size:
                    break
                data = pending[_HEADER.size:_HEADER.size + size]
                pending = pending[_HEADER.size + size:]
                this = 2 if kind == 2 else 1
                if merged and this != channel:
                    yield channel, bytes(merged)
                    merged.clear()
                channel = this
                merged += data
            if merged:
                yield channel, bytes(merged)
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        pending += chunk
