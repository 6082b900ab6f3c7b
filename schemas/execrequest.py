"""What an exec, attach or port-forward stream asks of a node, parsed once from the API server's request.

The API server (v1.20) turns ``kubectl exec``'s PodExecOptions into the kubelet's own form before it dials a
node: ``POST /exec/{namespace}/{pod}/{container}?command=sh&command=-c&command=...&input=1&output=1&error=1
&tty=1`` (``/attach/...`` the same without ``command``), and ``/portForward/{namespace}/{pod}`` (the ports
are in the SPDY streams' headers). Any other query parameter is refused with 400 naming it: a request we
would half-honour (a kubelet option we do not know) must not run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from schemas.fields import STRICT, BodyError
from schemas.names import is_namespace, is_object_name
from schemas.streamrequest import RequestRefused

EXEC = "exec"
ATTACH = "attach"
PORT_FORWARD = "portForward"
_EXEC_PARAMS = frozenset({"command", "input", "output", "error", "tty"})
_FORWARD_PARAMS = frozenset({"port"})
MAX_COMMAND = 64 * 1024
"""The most bytes of command line a request may carry (it rides in the open frame)."""


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """``op`` is exec (run ``command``) or attach (to the container's main process)."""
    op: str
    namespace: str
    pod: str
    container: str
    command: tuple[str, ...] = ()
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False

    def as_map(self) -> dict[str, Any]:
        out = asdict(self)
        out["command"] = list(self.command)
        return out

    @classmethod
    def parse(cls, value: Any) -> ExecRequest:
        """The ``req`` of an ``open`` frame (BodyError names the field)."""
        body = STRICT.body(value, "req")
        op = body.get("op")
        if op not in (EXEC, ATTACH):
            raise BodyError("req.op", f"must be {EXEC!r} or {ATTACH!r}")
        names = _names(body, ("namespace", "pod", "container"))
        command = body.get("command", [])
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise BodyError("req.command", "must be a list of strings")
        if op == EXEC and not command:
            raise BodyError("req.command", "an exec needs a command")
        flags = []
        for name in ("stdin", "stdout", "stderr", "tty"):
            flag = body.get(name, False)
            if not isinstance(flag, bool):
                raise BodyError(f"req.{name}", "must be a boolean")
            flags.append(flag)
        return cls(str(op), names[0], names[1], names[2], command=tuple(command), stdin=flags[0],
                   stdout=flags[1], stderr=flags[2], tty=flags[3])


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    """One forwarded connection: bytes to and from ``port`` of the pod."""
    namespace: str
    pod: str
    port: int

    def as_map(self) -> dict[str, Any]:
        return {"op": PORT_FORWARD, **asdict(self)}

    @classmethod
    def parse(cls, value: Any) -> ForwardRequest:
        body = STRICT.body(value, "req")
        if body.get("op") != PORT_FORWARD:
            raise BodyError("req.op", f"must be {PORT_FORWARD!r}")
        names = _names(body, ("namespace", "pod"))
        port = body.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise BodyError("req.port", "must be a port number, 1 to 65535")
        return cls(names[0], names[1], port)


def _names(body: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    names = []
    for name in fields:
        text = STRICT.required_text(body.get(name), f"req.{name}")
        if not (is_namespace(text) if name == "namespace" else is_object_name(text)):
            raise BodyError(f"req.{name}", f"{text!r} is not a valid name")
        names.append(text)
    return names


def stream_op(path: str) -> str:
    """The kubelet operation a request path names (its first segment): containerLogs, exec, attach, ..."""
    return unquote(path.strip("/").split("/", 1)[0])


def exec_request(path: str, query: str) -> ExecRequest:
    """``/exec/{ns}/{pod}/{container}`` or ``/attach/...`` and the query the API server sends with it."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) != 4 or parts[0] not in (EXEC, ATTACH):
        raise RequestRefused(404, f"no such path {path!r}: expected /{EXEC}/NAMESPACE/POD/CONTAINER or "
                                  f"/{ATTACH}/NAMESPACE/POD/CONTAINER")
    op, namespace, pod, container = parts
    if not is_namespace(namespace) or not is_object_name(pod) or not is_object_name(container):
        raise RequestRefused(400, f"{namespace}/{pod}/{container} is not a valid namespace, pod and container")
    values = _query(query, _EXEC_PARAMS)
    flags = {name: _flag(values, name) for name in ("input", "output", "error", "tty")}
    command = tuple(values.get("command", []))
    if op == ATTACH and command:
        raise RequestRefused(400, "command: an attach runs no command")
    if op == EXEC and not command:
        raise RequestRefused(400, "you must specify a command to execute")
    if sum(len(part) for part in command) > MAX_COMMAND:
        raise RequestRefused(400, f"command: longer than {MAX_COMMAND} bytes")
    stderr = flags["error"] and not flags["tty"]  # a terminal merges stderr into stdout
    if not (flags["input"] or flags["output"] or stderr):
        raise RequestRefused(400, "you must specify at least 1 of stdin, stdout, stderr")
    return ExecRequest(op, namespace, pod, container, command, stdin=flags["input"], stdout=flags["output"],
                       stderr=stderr, tty=flags["tty"])


def forward_path(path: str, query: str) -> tuple[str, str]:
    """``/portForward/{ns}/{pod}``: the namespace and pod (the ports come later, one per forwarded connection)."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) != 3 or parts[0] != PORT_FORWARD:
        raise RequestRefused(404, f"no such path {path!r}: expected /{PORT_FORWARD}/NAMESPACE/POD")
    _, namespace, pod = parts
    if not is_namespace(namespace) or not is_object_name(pod):
        raise RequestRefused(400, f"{namespace}/{pod} is not a valid namespace and pod")
    for text in _query(query, _FORWARD_PARAMS).get("port", []):
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise RequestRefused(400, f"port={text!r}: must be a port number, 1 to 65535")
    return namespace, pod


def _query(query: str, allowed: frozenset[str]) -> dict[str, list[str]]:
    values = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise RequestRefused(400, f"unknown query parameter{'s' * (len(unknown) > 1)} {', '.join(unknown)}: "
                                  f"this kubelet endpoint takes only {', '.join(sorted(allowed))}")
    return values


def _flag(values: dict[str, list[str]], name: str) -> bool:
    found = values.get(name)
    text = found[-1] if found else "0"
    if text.lower() not in ("1", "0", "true", "false", ""):
        raise RequestRefused(400, f"{name}={text!r}: must be 1 or 0")
    return text.lower() in ("1", "true")
