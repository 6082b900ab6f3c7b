"""What the node's stream end asks of podman, over podman's REST API on its socket, with the standard library.

EdgeD's runtime (through edge.podmanclient) is where containers are made and changed; this module only reads:
it lists a pod's containers by EdgeD's labels and streams a container's log, which must stop reading at once
when its reader went away: here the request's socket is shut down to end it (a followed read on a thread of
its own, as podman-py's ``logs()`` had, could not be stopped from outside).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from edge.errors import EdgeError
from edge.podlabels import ATTEMPT_LABEL, CONTAINER_LABEL, NAMESPACE_LABEL, NODE_LABEL, POD_LABEL, RESTARTS_ON_LABEL
from edge.podmanclient.transport import connection, parse_url
from edge.restarts import NEVER, restarts
from schemas.streamframe import CHUNK

API = "/v4.0.0/libpod"
_HEADER = struct.Struct(">BxxxI")  # the multiplexed stream of a container without a terminal: stream, size
COALESCE = CHUNK - 4096  # a piece fills a tunnel frame (a read may overshoot it; the session splits that)
GATHER_S = 0.005
"""How long a piece of a log waits for its next line (see _demux)."""


class PodmanApiError(EdgeError, RuntimeError):
    """podman could not be reached or refused a request; ``code`` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class PodContainer:
    id: str
    container: str
    attempt: int
    state: str
    exit_code: int = 0
    restarts_on: str = NEVER
    """From EdgeD's label (edge/restarts.py); a container made before it had none: never."""

    @property
    def ended(self) -> bool:
        return self.state in ("exited", "stopped")

    @property
    def awaits_restart(self) -> bool:
        """Ended, and EdgeD will start it again: it is its container's last state (CrashLoopBackOff)."""
        return self.ended and restarts(self.restarts_on, self.exit_code)


class PodmanApi:
    def __init__(self, url: str, node: str) -> None:
        self.url = parse_url(url)
        self.node = node

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return connection(self.url, timeout)

    def pod_containers(self, namespace: str, pod: str) -> list[PodContainer]:
        """The containers EdgeD made for the pod on this node (every attempt it kept), none if it is not here."""
        labels = [f"{NODE_LABEL}={self.node}", f"{NAMESPACE_LABEL}={namespace}", f"{POD_LABEL}={pod}"]
        query = urlencode({"all": "true", "filters": json.dumps({"label": labels})})
        found = self._json(f"{API}/containers/json?{query}")
        out = []
        for item in found if isinstance(found, list) else []:
            item_labels: dict[str, Any] = item.get("Labels") or {}
            if CONTAINER_LABEL in item_labels:
                out.append(PodContainer(str(item.get("Id", "")), str(item_labels[CONTAINER_LABEL]),
                                        int(item_labels.get(ATTEMPT_LABEL, "0") or 0), str(item.get("State", "")),
                                        int(item.get("ExitCode") or 0), str(item_labels.get(RESTARTS_ON_LABEL, NEVER))))
        return out

    def log_file(self, container_id: str) -> str | None:
        """The container's log file when podman writes it as a CRI (``k8s-file``) log, from its inspect; None for
        another driver (journald, none) or when podman names no path."""
        info = self._json(f"{API}/containers/{quote(container_id)}/json")
        config = (info.get("HostConfig") or {}).get("LogConfig") or {} if isinstance(info, dict) else {}
        if str(config.get("Type") or "k8s-file") not in ("k8s-file", "json-file"):
            return None
        path = config.get("Path") or (info.get("LogPath") if isinstance(info, dict) else None)
        return str(path) if path else None

    def running(self, container_id: str) -> bool:
        """Whether the container may still write to its log (not ended, not removed)."""
        try:
            info = self._json(f"{API}/containers/{quote(container_id)}/json")
        except PodmanApiError:
            return False
        status = str(((info.get("State") or {}) if isinstance(info, dict) else {}).get("Status", ""))
        return status not in ("exited", "stopped", "dead", "removing", "")

    def get_json(self, path: str) -> Any:
        """podman's JSON answer to ``GET {API}{path}`` (PodmanApiError when it fails)."""
        return self._json(f"{API}{path}")

    def _json(self, path: str) -> Any:
        connection = self._connection(30.0)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise PodmanApiError(503, f"podman is not answering at {self.url.geturl()}: {exc}") from exc
        finally:
            connection.close()
        if response.status != 200:
            raise PodmanApiError(502, f"podman answered {response.status}: {body[:300].decode(errors='replace')}")
        return json.loads(body)

    def logs(self, container_id: str, params: dict[str, str], stop: threading.Event,
             register: Callable[[http.client.HTTPConnection], None]) -> Iterator[bytes]:
        """The container's output (stdout and stderr as they came, without podman's framing), chunk by chunk.
        Reading stops when the log ends (unless followed), or once ``stop`` is set and the connection given
        to ``register`` is ``interrupt``-ed."""
        connection = self._connection(None)
        register(connection)
        try:
            connection.request("GET", f"{API}/containers/{quote(container_id)}/logs?{urlencode(params)}")
            response = connection.getresponse()
            if response.status != 200:
                raise PodmanApiError(502, f"podman refused the log: {response.read()[:300].decode(errors='replace')}")
            yield from _demux(response, stop, connection.sock)
        except OSError as exc:
            if not stop.is_set():
                raise PodmanApiError(503, f"reading the log from podman failed: {exc}") from exc
        finally:
            connection.close()


def interrupt(connection: http.client.HTTPConnection | None) -> None:
    """End a blocked read of a followed log (from another thread)."""
    sock = connection.sock if connection is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _more_ready(response: http.client.HTTPResponse, sock: socket.socket | None, wait_s: float) -> bool:
    """Whether more of the answer can be read within ``wait_s`` (in the reader's buffer, or on the socket).
    More than 2 bytes: the CRLF that ends an HTTP chunk just read stays in the buffer, and is no more log."""
    if sock is None:
        return False
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        if len(response.fp.peek(3)) > 2:
            return True
        # Only the CRLF buffered (peek reads nothing more then): is the next chunk on its way?
        return bool(select.select([sock], [], [], wait_s)[0])
    except (OSError, ValueError):
        return False
    finally:
        sock.settimeout(timeout)


def _demux(response: http.client.HTTPResponse, stop: threading.Event, sock: socket.socket | None
           ) -> Iterator[bytes]:
    """podman frames a log as [stream, 0, 0, 0, size (big-endian u32)] + bytes; the kubelet's log is just the
    bytes, both streams in the order they came (as ``kubectl logs`` shows them).

    podman sends each line in an HTTP chunk of its own, and a read returns at most one: lines are gathered
    before a piece is yielded, so that a log of short lines goes up in frames of up to COALESCE bytes instead
    of one frame per line (a tunnel frame is an MQTT message through two brokers). What is ready at once is not
    enough: podman writes its lines little faster than they are read here, and the pieces averaged under 1 KB
    (20 000 frames for a 20 MB log, which held ``kubectl logs`` to 3-5 MB/s); so a piece waits up to
    GATHER_S for the next line, a delay a ``logs -f`` reader does not see."""
    pending = bytearray()
    while not stop.is_set():
        chunk = response.read1(65536)
        if not chunk:
            return
        pending += chunk
        while len(pending) < COALESCE and _more_ready(response, sock, GATHER_S):
            more = response.read1(65536)
            if not more:
                break
            pending += more
        out = bytearray()
        at = 0
        while len(pending) - at >= _HEADER.size:
            _stream, size = _HEADER.unpack_from(pending, at)
            if len(pending) - at < _HEADER.size + size:
                break
            out += pending[at + _HEADER.size:at + _HEADER.size + size]
            at += _HEADER.size + size
        del pending[:at]
        if out:
            yield bytes(out)
