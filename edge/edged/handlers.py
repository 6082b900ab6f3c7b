"""Running a probe's or a lifecycle hook's handler against a container: a command in it, an HTTP GET to it,
a TCP connection to it. One place for both, since kubelet runs both the same way.

A handler that cannot run (podman refuses the exec, nothing answers at the address) has failed: the
container is what is being asked about, not the handler.
"""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from edge.edged.handlerspec import Handler
from edge.edged.runtime import ContainerRuntimeError, PodmanRuntime

PROBE_USER_AGENT = "kube-probe/1.20"
MESSAGE_LIMIT = 1024
"""How much of a failed handler's output is kept for its message."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str = ""
    """Why it failed (the command's output, the HTTP status, the connection error)."""


def run_handler(runtime: PodmanRuntime, container_id: str, handler: Handler, pod_address: Callable[[], str],
                timeout_s: float | None) -> Outcome:
    """Run ``handler`` for the container; ``timeout_s`` None waits as long as it takes (a postStart hook).
    ``pod_address`` is asked only when a GET or connection names no host (it may cost a call to podman)."""
    if handler.action == "exec":
        return _exec(runtime, container_id, list(handler.command), timeout_s)
    host = handler.host or pod_address()
    if not host:
        return Outcome(False, "the pod has no address yet")
    if handler.action == "tcpSocket":
        try:
            with socket.create_connection((host, handler.port), timeout=timeout_s):
                return Outcome(True)
        except OSError as exc:
            return Outcome(False, f"dial tcp {host}:{handler.port}: {exc}")
    return _http_get(handler, host, timeout_s)


_overdue: set[tuple[str, tuple[str, ...]]] = set()
"""(container id, command) of the commands that outlived their timeout and still run."""
_overdue_lock = threading.Lock()


def _exec(runtime: PodmanRuntime, container_id: str, command: list[str], timeout_s: float | None) -> Outcome:
    """A command in the container. With a timeout, the wait is given up, not the command: podman's exec
    cannot be cancelled, and kubelet leaves a timed-out probe's command running too. While one still runs,
    the same command in the same container fails at once instead of starting again, so that a probe that
    hangs holds one thread, not one per period."""
    result: list[Outcome] = []
    key = (container_id, tuple(command))
    finished: list[bool] = []  # under _overdue_lock: set by the command's thread when it is done

    def run() -> None:
        try:
            code, output = runtime.exec(container_id, command)
            text = output.decode(errors="replace")[-MESSAGE_LIMIT:]
            result.append(Outcome(code == 0, text if code == 0 else f"exit code {code}: {text}".rstrip()))
        except ContainerRuntimeError as exc:
            result.append(Outcome(False, str(exc)))
        finally:
            with _overdue_lock:
                finished.append(True)
                _overdue.discard(key)

    if timeout_s is None:
        run()
        return result[0]
    with _overdue_lock:
        if key in _overdue:
            return Outcome(False, f"command {command} is still running from an earlier time it timed out")
    thread = threading.Thread(target=run, name="handler-exec", daemon=True)
    thread.start()
    thread.join(timeout_s)
    with _overdue_lock:
        if not finished:
            _overdue.add(key)
            return Outcome(False, f"command {command} timed out after {timeout_s:g}s")
    return result[0] if result else Outcome(False, f"command {command} failed to run")


def _http_get(handler: Handler, host: str, timeout_s: float | None) -> Outcome:
    """A GET that passes on a 2xx or 3xx answer (redirects followed); HTTPS is not verified, as kubelet's."""
    authority = f"[{host}]" if ":" in host else host
    url = f"{handler.scheme.lower()}://{authority}:{handler.port}{handler.path}"
    request = urllib.request.Request(url, headers={"User-Agent": PROBE_USER_AGENT, "Accept": "*/*"})
    for name, value in handler.headers:  # after the defaults: a header of the spec replaces them (Host too)
        request.add_header(name, value)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        return Outcome(False, f"HTTP probe failed with statuscode: {exc.code}")
    except (OSError, ValueError) as exc:
        return Outcome(False, f"GET {url}: {exc}")
    return Outcome(200 <= code < 400, f"HTTP status {code}")
