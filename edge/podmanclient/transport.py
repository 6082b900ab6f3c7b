"""One HTTP request to podman's service, and the one error root for what podman refuses or cannot answer.

podman answers a failure with JSON ``{"cause", "message", "response"}``: PodmanError keeps the HTTP status and
podman's message, so a caller tells "no such container" (NotFound, 404) from "already stopped" (304, not an
error) or "in use" (409, ``status``) as it did with podman-py's NotFound and APIError.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

from edge.errors import EdgeError

API = "/v4.0.0/libpod"
DEFAULT_TIMEOUT_S = 120.0
"""podman-py waited for ever; a service that hangs (the watchdog restarts it) now fails a call after this long,
which is longer than any create or start takes on a busy node."""


class PodmanError(EdgeError, RuntimeError):
    """podman refused a request (``status`` is its HTTP status) or did not answer (``status`` 0)."""

    def __init__(self, status: int, message: str, cause: str = "") -> None:
        self.status = status
        self.message = message
        self.cause = cause
        super().__init__(f"{status} {message}" if status else message)


class NotFound(PodmanError):
    """podman answered 404: no such image, pod, container or exec session."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def parse_url(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("unix", "http"):
        raise ValueError(f"podman URL {url!r}: must be unix:///path/to/socket or http://host:port")
    return parts


def connection(url: SplitResult, timeout: float | None) -> http.client.HTTPConnection:
    """A new connection to the service (one per request: podman's service handles each on its own)."""
    if url.scheme == "unix":
        return _UnixConnection(url.path, timeout)
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)


def path_of(template: str, *names: str) -> str:
    """``API + template`` with each ``{}`` replaced by a name quoted for a path segment."""
    return API + template.format(*(quote(n, safe="") for n in names))


def query(params: Mapping[str, Any]) -> str:
    """A query string: None left out, booleans as podman's ``true``/``false``, dicts and lists as JSON."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, dict | list):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return f"?{urlencode(out)}" if out else ""


def error_of(status: int, body: bytes) -> PodmanError:
    """The error podman's failure answer stands for (its JSON message, or its text when it sent no JSON)."""
    message = cause = body[:500].decode(errors="replace").strip()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        message = str(parsed.get("message") or message)
        cause = str(parsed.get("cause") or "")
    kind = NotFound if status == 404 else PodmanError
    return kind(status, message or f"podman answered {status}", cause)


def send(url: SplitResult, method: str, path: str, *, body: object | None = None,
         headers: Mapping[str, str] | None = None, timeout: float | None = DEFAULT_TIMEOUT_S
         ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send a request and read the head of the answer; the caller reads the body and closes the connection.
    PodmanError (status 0) when podman cannot be reached."""
    conn = connection(url, timeout)
    raw = json.dumps(body).encode() if body is not None else None
    head = dict(headers or {})
    if raw is not None:
        head["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=raw, headers=head)
        return conn, conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise PodmanError(0, f"podman is not answering at {url.geturl()}: {exc!r}") from exc


def call(url: SplitResult, method: str, path: str, *, body: object | None = None,
         headers: Mapping[str, str] | None = None, timeout: float | None = DEFAULT_TIMEOUT_S) -> Answer:
    """One request and its whole answer; PodmanError (NotFound for 404) when podman answers 400 or more."""
    conn, response = send(url, method, path, body=body, headers=headers, timeout=timeout)
    try:
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise PodmanError(0, f"reading podman's answer to {method} {path} failed: {exc!r}") from exc
    finally:
        conn.close()
    if response.status >= 400:
        raise error_of(response.status, data)
    return Answer(response.status, data)
