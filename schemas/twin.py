"""KubeEdge's device-twin JSON, read and written in one place, so that existing mappers work unchanged.

Every message carries ``event_id`` and ``timestamp`` (milliseconds). A twin entry is
``{"expected": {"value", "metadata": {"timestamp"}}, "actual": {...}, "optional", "metadata": {"type"}}``;
answers never carry versions. Errors are ``{"event_id", "timestamp", "code", "reason"}``
with 400 for bad requests, 404 for unknown devices, 409 for version conflicts.
Validation follows KubeEdge: property names ``[a-zA-Z0-9-_.,:/@#]{1,128}``, values the
same characters up to 512, types "", string, int, integer, float, boolean, deleted.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from schemas.errors import WireFormatError

BAD_REQUEST, NOT_FOUND, CONFLICT, INTERNAL = 400, 404, 409, 500
MAX_JSON_BYTES = 64 * 1024
_NAME = re.compile(r"[a-zA-Z0-9\-_.,:/@#]{1,128}")
_VALUE = re.compile(r"[a-zA-Z0-9\-_.,:/@#]{1,512}")
TYPES = frozenset({"", "string", "int", "integer", "float", "boolean", "deleted"})
STATES = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
MODEL_TYPES = {"INT": "int", "FLOAT": "float", "DOUBLE": "float", "BOOLEAN": "boolean", "STRING": "string",
               "BYTES": "string", "TIMESTAMP": "int"}


class TwinError(WireFormatError):
    """A request that cannot be applied; ``code`` goes into the error JSON."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_event_id() -> str:
    return str(uuid.uuid4())


def loads(payload: bytes) -> dict[str, Any]:
    """The request as a JSON object; TwinError(400) for anything else."""
    if len(payload) > MAX_JSON_BYTES:
        raise TwinError(BAD_REQUEST, f"message is {len(payload)} bytes, over the {MAX_JSON_BYTES}-byte limit")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TwinError(BAD_REQUEST, f"not valid JSON: {exc}") from None
    except RecursionError:
        # json's decoder recurses once per level: about a thousand "[" (far under the size limit) raise this.
        # It is a 400 like any other bad JSON, or DeviceTwin would lose the whole batch the request is in.
        raise TwinError(BAD_REQUEST, "not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise TwinError(BAD_REQUEST, "the message must be a JSON object")
    return obj


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def event_id_of(obj: dict[str, Any]) -> str:
    value = obj.get("event_id", "")
    return value if isinstance(value, str) else ""


def check_name(name: Any) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise TwinError(BAD_REQUEST, f"property name {str(name)[:40]!r} is not allowed (1-128 of a-z A-Z 0-9 -_.,:/@#)")
    return name


def check_value(value: Any, kind: str, prop: str) -> str:
    """A twin value is a string; it must match the pattern and parse as its type."""
    if not isinstance(value, str):
        raise TwinError(BAD_REQUEST, f"{prop}: values are strings in KubeEdge's twin JSON, got {type(value).__name__}")
    if value != "" and _VALUE.fullmatch(value) is None:
        raise TwinError(BAD_REQUEST, f"{prop}: the value is longer than 512 or has characters outside a-z A-Z 0-9 "
                                     "-_.,:/@#")
    if kind in ("int", "integer"):
        try:
            int(value)
        except ValueError:
            raise TwinError(BAD_REQUEST, f"{prop}: {value!r} is not an int") from None
    elif kind == "float":
        try:
            float(value)
        except ValueError:
            raise TwinError(BAD_REQUEST, f"{prop}: {value!r} is not a float") from None
    elif kind == "boolean" and value not in ("true", "false"):
        raise TwinError(BAD_REQUEST, f"{prop}: {value!r} is not a boolean (true or false)")
    return value


@dataclass(frozen=True)
class PropUpdate:
    """One property of a twin/update: new actual and/or expected value (None: unchanged)."""

    actual: str | None
    expected: str | None
    kind: str | None
    optional: bool | None


def parse_update(obj: dict[str, Any]) -> dict[str, PropUpdate | None]:
    """``twin`` of a twin/update: property -> change, or None to delete the property."""
    twin = obj.get("twin")
    if not isinstance(twin, dict) or not twin:
        raise TwinError(BAD_REQUEST, "the message has no twin to update")
    out: dict[str, PropUpdate | None] = {}
    for name, entry in twin.items():
        check_name(name)
        if entry is None:
            out[name] = None
            continue
        if not isinstance(entry, dict):
            raise TwinError(BAD_REQUEST, f"{name}: a twin entry must be an object")
        meta = entry.get("metadata")
        if not isinstance(meta, dict | None):
            raise TwinError(BAD_REQUEST, f"{name}: metadata must be an object")
        kind = (meta or {}).get("type")
        # isinstance first: ``[] in TYPES`` raises TypeError (unhashable), which would crash the batch
        # instead of answering 400.
        if kind is not None and (not isinstance(kind, str) or kind not in TYPES):
            raise TwinError(BAD_REQUEST, f"{name}: type {str(kind)[:40]!r} is not one of {sorted(TYPES - {''})}")
        values: dict[str, str | None] = {}
        for side in ("actual", "expected"):
            part = entry.get(side)
            if part is None:
                values[side] = None
            elif isinstance(part, dict) and "value" in part:
                values[side] = part["value"]
            else:
                raise TwinError(BAD_REQUEST, f"{name}: {side} must be an object with a value")
        optional = entry.get("optional")
        if optional is not None and not isinstance(optional, bool):
            raise TwinError(BAD_REQUEST, f"{name}: optional must be true or false")
        if values["actual"] is None and values["expected"] is None:
            raise TwinError(BAD_REQUEST, f"{name}: neither actual nor expected is given")
        out[name] = PropUpdate(values["actual"], values["expected"], kind, optional)
    return out


def parse_state(obj: dict[str, Any]) -> str:
    state = obj.get("state")
    if not isinstance(state, str) or state.lower() not in STATES:
        raise TwinError(BAD_REQUEST, f"state must be one of {sorted(STATES)}")
    return state.lower()


# -- answers ---------------------------------------------------------------------------------


def error(event_id: str, code: int, reason: str) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": now_ms(), "code": code, "reason": reason}


def entry(expected: str | None, expected_ts: int | None, actual: str | None, actual_ts: int | None, kind: str,
          optional: bool) -> dict[str, Any]:
    """One property as KubeEdge shows it (no versions)."""
    out: dict[str, Any] = {}
    if expected is not None:
        out["expected"] = {"value": expected, "metadata": {"timestamp": expected_ts or 0}}
    if actual is not None:
        out["actual"] = {"value": actual, "metadata": {"timestamp": actual_ts or 0}}
    out["optional"] = optional
    out["metadata"] = {"type": kind}
    return out


def result(event_id: str, twin: dict[str, Any]) -> dict[str, Any]:
    """twin/update/result: the properties the request changed (null for deleted ones)."""
    return {"event_id": event_id, "timestamp": now_ms(), "twin": twin}


def document(event_id: str, changes: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """twin/update/document: for each changed property, its ``last`` and ``current`` entry."""
    return {"event_id": event_id, "timestamp": now_ms(),
            "twin": {k: {"last": last, "current": current} for k, (last, current) in changes.items()}}


def delta(twin: dict[str, dict[str, Any]], removed: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """twin/update/delta: every property with an expected value, and ``delta`` where expected != actual.

    ``removed`` lists desired properties deleted in Kubernetes: beyond KubeEdge, they appear in
    ``delta`` as null so that devices drop the old target. None when there is nothing to say.
    """
    with_expected = {k: v for k, v in twin.items() if "expected" in v}
    differing: dict[str, Any] = {
        k: v["expected"]["value"] for k, v in with_expected.items()
        if v["expected"]["value"] != (v.get("actual") or {}).get("value")}
    for name in removed:
        differing[name] = None
    if not differing:
        return None
    return {"event_id": new_event_id(), "timestamp": now_ms(), "twin": with_expected, "delta": differing}


def get_result(event_id: str, twin: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": now_ms(), "twin": twin}


def state_result(name: str, state: str, last_online: str) -> dict[str, Any]:
    device: dict[str, Any] = {"name": name, "state": state}
    if last_online:
        device["last_online"] = last_online
    return {"event_id": new_event_id(), "timestamp": now_ms(), "device": device}


def membership_device(device_id: str, name: str, description: str, state: str, last_online: str,
                      twin: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": device_id, "name": name, "description": description, "state": state}
    if last_online:
        out["last_online"] = last_online
    if twin is not None:
        out["twin"] = twin
    return out


def membership_get_result(event_id: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": now_ms(), "devices": devices}


def membership_updated(added: list[dict[str, Any]], removed: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event_id": new_event_id(), "timestamp": now_ms(), "added_devices": added, "removed_devices": removed}
