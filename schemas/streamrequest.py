"""What a stream asks of a node: the kubelet request, parsed once from the API server's query string.

``LogRequest`` is ``GET /containerLogs/{namespace}/{pod}/{container}`` with the query parameters the API
server passes on from ``kubectl logs`` (its PodLogOptions): follow, tailLines, sinceSeconds, sinceTime,
timestamps, previous, limitBytes. A bad value is refused here with the parameter named (the API server
shows the message to the user), before anything is sent to the node.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from schemas.errors import WireFormatError
from schemas.fields import STRICT, BodyError
from schemas.names import is_namespace, is_object_name

LOGS = "containerLogs"
_BOOLS = {"true": True, "1": True, "false": False, "0": False, "": True}


class RequestRefused(WireFormatError):
    """A request the stream server answers with ``code`` (400, 404) and this message."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class LogRequest:
    namespace: str
    pod: str
    container: str
    follow: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: float | None = None  # seconds since the epoch
    timestamps: bool = False
    previous: bool = False
    limit_bytes: int | None = None

    def as_map(self) -> dict[str, Any]:
        return {"op": LOGS, **{k: v for k, v in asdict(self).items() if v is not None}}

    @classmethod
    def parse(cls, value: Any) -> LogRequest:
        """The ``req`` of an ``open`` frame (BodyError names the field)."""
        body = STRICT.body(value, "req")
        if body.get("op") != LOGS:
            raise BodyError("req.op", f"must be {LOGS!r}")
        names = []
        for name, check in (("namespace", is_namespace), ("pod", is_object_name), ("container", is_object_name)):
            text = STRICT.required_text(body.get(name), f"req.{name}")
            if not check(text):
                raise BodyError(f"req.{name}", f"{text!r} is not a valid name")
            names.append(text)
        for name in ("follow", "timestamps", "previous"):
            if not isinstance(body.get(name, False), bool):
                raise BodyError(f"req.{name}", "must be a boolean")
        for name in ("tail_lines", "since_seconds", "limit_bytes", "since_time"):
            number = body.get(name)
            if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)
                                       or number < 0):
                raise BodyError(f"req.{name}", "must be a non-negative number")
        return cls(names[0], names[1], names[2], follow=body.get("follow", False),
                   tail_lines=_int(body.get("tail_lines")), since_seconds=_int(body.get("since_seconds")),
                   since_time=body.get("since_time"), timestamps=body.get("timestamps", False),
                   previous=body.get("previous", False), limit_bytes=_int(body.get("limit_bytes")))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def log_request(path: str, query: str) -> LogRequest:
    """``/containerLogs/{ns}/{pod}/{container}`` and its query string, as the API server sends them."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) != 4 or parts[0] != LOGS:
        raise RequestRefused(404, f"no such path {path!r}: expected /{LOGS}/NAMESPACE/POD/CONTAINER")
    _, namespace, pod, container = parts
    if not is_namespace(namespace) or not is_object_name(pod) or not is_object_name(container):
        raise RequestRefused(400, f"{namespace}/{pod}/{container} is not a valid namespace, pod and container")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return LogRequest(namespace, pod, container, follow=_flag(params, "follow"),
                      tail_lines=_count(params, "tailLines"), since_seconds=_count(params, "sinceSeconds"),
                      since_time=_time(params, "sinceTime"), timestamps=_flag(params, "timestamps"),
                      previous=_flag(params, "previous"), limit_bytes=_count(params, "limitBytes"))


def _flag(params: dict[str, str], name: str) -> bool:
    text = params.get(name)
    if text is None:
        return False
    if text.lower() not in _BOOLS:
        raise RequestRefused(400, f"{name}={text!r}: must be true or false")
    return _BOOLS[text.lower()]


def _count(params: dict[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise RequestRefused(400, f"{name}={text!r}: must be a non-negative integer")
    return int(text)


def _time(params: dict[str, str], name: str) -> float | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise RequestRefused(400, f"{name}={text!r}: must be an RFC 3339 time") from None
