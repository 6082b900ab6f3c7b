"""Probes and lifecycle handlers as a container's spec writes them, read once into types. No I/O here.

A handler is what a probe or a hook does (exec a command, GET a URL, open a TCP connection); a probe adds
the timing a kubelet honours. Named ports are resolved here, against the container's own ports, so that a
name that matches none refuses the pod at once instead of failing every probe. Each reader raises
``HandlerSpecError`` with the field's path; podspec turns it into the pod's refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.errors import EdgeError

ACTIONS = ("exec", "httpGet", "tcpSocket")

PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                  "failureThreshold": 3}
"""The API server's defaults; a 0 (what an unset int32 reads as) means the default, as the API server's
defaulting makes it before a kubelet sees the pod."""


class HandlerSpecError(EdgeError, ValueError):
    """A probe or hook cannot be honoured as written; the message names the field."""


@dataclass(frozen=True)
class Handler:
    action: str  # exec | httpGet | tcpSocket
    command: tuple[str, ...] = ()
    scheme: str = "HTTP"
    host: str = ""  # empty: the pod's address
    port: int = 0
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Probe:
    handler: Handler
    initial_delay_s: int = 0
    period_s: int = 10
    timeout_s: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_s: int | None = None
    """How long a container this probe kills has to stop (the probe's own field), else the pod's."""


def named_ports(container: dict[str, Any]) -> dict[str, int]:
    """The container's ports by name (the names a probe or hook may use instead of a number)."""
    out: dict[str, int] = {}
    for port in container.get("ports") or []:
        if isinstance(port, dict) and isinstance(port.get("name"), str) and isinstance(port.get("containerPort"),
                                                                                        int):
            out[port["name"]] = port["containerPort"]
    return out


def _port(value: Any, where: str, ports: dict[str, int]) -> int:
    if isinstance(value, bool):
        raise HandlerSpecError(f"{where}.port must be a number or a port name")
    if isinstance(value, str):
        if value in ports:
            return ports[value]
        if not value.isdigit():
            raise HandlerSpecError(f"{where}.port {value!r} names no port of the container")
        value = int(value)
    if not isinstance(value, int) or not 0 < value < 65536:
        raise HandlerSpecError(f"{where}.port must be between 1 and 65535")
    return value


def read_handler(raw: Any, where: str, ports: dict[str, int], *, allowed: tuple[str, ...] = ACTIONS,
                 extra: tuple[str, ...] = ()) -> Handler:
    """One handler; ``allowed`` is what this place takes (hooks do not run tcpSocket: see hooks.py), ``extra``
    the other fields it may hold (a probe's timing)."""
    if not isinstance(raw, dict):
        raise HandlerSpecError(f"{where} must be a map")
    actions = [a for a in ACTIONS if raw.get(a) is not None]
    unknown = sorted(k for k in raw if k not in ACTIONS and k not in extra)
    if unknown:
        raise HandlerSpecError(f"{where}.{unknown[0]} is not supported on this node")
    if len(actions) != 1:
        raise HandlerSpecError(f"{where} must use exactly one of {', '.join(allowed)}")
    action = actions[0]
    if action not in allowed:
        raise HandlerSpecError(f"{where}.{action} is not supported here (use {' or '.join(allowed)})")
    body = raw[action]
    if not isinstance(body, dict):
        raise HandlerSpecError(f"{where}.{action} must be a map")
    if action == "exec":
        command = body.get("command")
        if not isinstance(command, list) or not command:
            raise HandlerSpecError(f"{where}.exec.command must be a non-empty list")
        return Handler("exec", command=tuple(str(c) for c in command))
    port = _port(body.get("port"), f"{where}.{action}", ports)
    if action == "tcpSocket":
        return Handler("tcpSocket", host=str(body.get("host") or ""), port=port)
    scheme = str(body.get("scheme") or "HTTP")
    if scheme not in ("HTTP", "HTTPS"):
        raise HandlerSpecError(f"{where}.httpGet.scheme must be HTTP or HTTPS")
    headers = []
    for header in body.get("httpHeaders") or []:
        if not isinstance(header, dict) or not isinstance(header.get("name"), str) or not header["name"]:
            raise HandlerSpecError(f"{where}.httpGet.httpHeaders: each header needs a name")
        headers.append((header["name"], str(header.get("value", ""))))
    path = str(body.get("path") or "/")
    return Handler("httpGet", scheme=scheme, host=str(body.get("host") or ""), port=port,
                   path=path if path.startswith("/") else "/" + path, headers=tuple(headers))


def read_probe(raw: Any, where: str, ports: dict[str, int], *, kind: str) -> Probe:
    """A probe; ``kind`` is liveness, readiness or startup (the first and last must succeed once to pass)."""
    handler = read_handler(raw, where, ports, extra=(*PROBE_DEFAULTS, "terminationGracePeriodSeconds"))
    timing: dict[str, int] = {}
    for name, default in PROBE_DEFAULTS.items():
        value = raw.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise HandlerSpecError(f"{where}.{name} must be a whole number, 0 or more")
        timing[name] = value or default
    if kind in ("liveness", "startup") and timing["successThreshold"] != 1:
        raise HandlerSpecError(f"{where}.successThreshold must be 1")
    grace = raw.get("terminationGracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 1):
        raise HandlerSpecError(f"{where}.terminationGracePeriodSeconds must be a whole number, 1 or more")
    if grace is not None and kind == "readiness":
        raise HandlerSpecError(f"{where}.terminationGracePeriodSeconds must not be set on a readiness probe")
    return Probe(handler, initial_delay_s=timing["initialDelaySeconds"], period_s=timing["periodSeconds"],
                 timeout_s=timing["timeoutSeconds"], success_threshold=timing["successThreshold"],
                 failure_threshold=timing["failureThreshold"], termination_grace_s=grace)
