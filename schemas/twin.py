"""KubeEdge's device-twin JSON, read and written in one place, so that existing mappers and clients work unchanged.

Every message carries ``event_id`` and ``timestamp`` (milliseconds). A twin entry is
``{"expected": {"value", "metadata": {"timestamp"}}, "actual": {...}, "optional", "metadata": {"type"}}``;
answers never carry versions. Errors are ``{"event_id", "timestamp", "code", "reason"}``
with 400 for bad requests, 404 for unknown devices, 409 for version conflicts, and the
reasons worded as KubeEdge's edge words them (clients match on them).
Where KubeEdge's Go structs omit empty fields (``omitempty``) or write a nil list as ``null``,
the builders here do the same. Validation follows KubeEdge: property names
``[a-zA-Z0-9-_.,:/@#]{1,128}``, values the same characters up to 512, a value parsed as its type.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.errors import WireFormatError

BAD_REQUEST, NOT_FOUND, CONFLICT, INTERNAL = 400, 404, 409, 500
MAX_JSON_BYTES = 64 * 1024
_NAME = re.compile(r"[a-zA-Z0-9\-_.,:/@#]{1,128}")
_VALUE = re.compile(r"[a-zA-Z0-9\-_.,:/@#]{1,512}")
# What Go's strconv.ParseInt(v, 10, 64) and ParseFloat(v, 64) take among the characters a value may hold
# (no "+" or spaces get past _VALUE): Python's int() and float() also take "1_000", which Go refuses.
_GO_INT = re.compile(r"-?[0-9]+")
_GO_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]-?[0-9]+)?|-?(?i:inf|infinity|nan)")
INT64 = 2**63
_FITS_FLOAT64 = 300
"""A decimal without an exponent that is shorter than this fits a float64 (whose largest is about 1.8e308)."""

EDGE_TYPES = frozenset({"", "string", "int", "integer", "float", "boolean", "deleted"})
"""The twin types KubeEdge's edge knows (dtcommon.ValidateValue): the ones a device may give a twin it creates."""
TYPES = EDGE_TYPES | {"double", "bytes", "stream"}
"""Twin types a value is checked against: KubeEdge edge's and, beyond it, the names its mapper framework gives
DeviceModel types (double, bytes, stream), which a twin gets from its DeviceModel or the Device's
desired.metadata.type. KubeEdge's edge answers "the value type is not allowed" to every value of those types."""
STATES = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
MODEL_TYPES = {"INT": "int", "FLOAT": "float", "DOUBLE": "double", "BOOLEAN": "boolean", "STRING": "string",
               "BYTES": "bytes", "STREAM": "stream", "TIMESTAMP": "int"}
"""DeviceModel property type -> twin type: lower case, as KubeEdge's mapper framework names them
(TIMESTAMP, ours, is milliseconds: an int)."""

# KubeEdge edge's reasons, word for word (edge/pkg/devicetwin: dttype errors, dtcommon.ValidateValue, dtmanager).
REASON_UNMARSHAL = "Unmarshal update request body failed, please check the request"
REASON_NO_TWIN = "Update twin error, key:twin does not exist"
REASON_KEY = ("The key of twin must only include upper or lowercase letters, number, english, and special letter "
              "- _ . , : / @ # and the length of key should be less than 128 bytes")
REASON_VALUE = ("The value of twin must only include upper or lowercase letters, number, english, and special letter "
                "- _ . , : / @ # and the length of value should be less than 512 bytes")
REASON_NOT_INT = "the value is not int or integer"
REASON_NOT_FLOAT = "the value is not float"
REASON_NOT_BOOL = "the bool value must be true or false"
REASON_TYPE = "the value type is not allowed"
REASON_NO_DEVICE = "update rejected due to the device is not existed"


def get_not_found(device_id: str) -> str:
    return f"Device {device_id} not found while getting twin"


def get_unmarshal(what: str, payload: bytes, why: str) -> str:
    """KubeEdge's reason for a twin or membership get it cannot read (its Go error printed with %#v; ours in
    Python's words)."""
    return f"Unmarshal {what} info {payload[:200].decode(errors='replace')} failed , err: {why}"


class TwinError(WireFormatError):
    """A request that cannot be applied; ``code`` and ``reason`` go into the error JSON."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_event_id() -> str:
    return str(uuid.uuid4())


def loads(payload: bytes) -> dict[str, Any]:
    """The request as a JSON object (``null`` as an empty one); TwinError(400) for anything else (callers reword
    it as KubeEdge does)."""
    if len(payload) > MAX_JSON_BYTES:
        raise TwinError(BAD_REQUEST, f"message is {len(payload)} bytes, over the {MAX_JSON_BYTES}-byte limit")
    try:
        obj = _read_json(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TwinError(BAD_REQUEST, f"not valid JSON: {exc}") from None
    except RecursionError:
        # json's decoder recurses once per level: about a thousand "[" (far under the size limit) raise this.
        # It is a 400 like any other bad JSON, or DeviceTwin would lose the whole batch the request is in.
        raise TwinError(BAD_REQUEST, "not valid JSON: nested too deeply") from None
    if obj is None:
        # Go's json.Unmarshal reads null into a struct as no error and no field set: KubeEdge then answers an
        # update with "no twin" and a get as a get without event_id.
        obj = {}
    if not isinstance(obj, dict):
        raise TwinError(BAD_REQUEST, "the message must be a JSON object")
    check_base(obj)
    return obj


_DIGITS_ONLY = bytes(48 if byte in b"0123456789" else 32 for byte in range(256))
"""Each digit made a "0", every other byte a space: a run of digits of the payload is then a run of zeros here. (A
translate and a substring test take a tenth of what a regex search for 19 digits in a row takes.)"""
_LONG_NUMBER = b"0" * 19


def _read_json(payload: bytes) -> Any:
    """What ``json.loads`` reads from ``payload``, read by orjson where that gives the same (a fifth of the time).
    orjson refuses some of what json takes (NaN and Infinity, a UTF-8 BOM, lone surrogates, numbers beyond a
    double's range, other encodings than UTF-8): those go to json, which decides. Where both read a document
    they read the same values, but for integers beyond 64 bits, which orjson reads as floats: a payload with a
    run of 19 digits anywhere (in a string too) goes to json as well."""
    if _LONG_NUMBER not in payload.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    return json.loads(payload)


def check_base(obj: dict[str, Any]) -> None:
    """``event_id`` and ``timestamp`` as Go reads them into KubeEdge's BaseMessage (a string, an int64)."""
    event_id, timestamp = obj.get("event_id"), obj.get("timestamp")
    if event_id is not None and not isinstance(event_id, str):
        raise TwinError(BAD_REQUEST, "event_id must be a string")
    if timestamp is not None and (type(timestamp) is not int or not -INT64 <= timestamp < INT64):
        raise TwinError(BAD_REQUEST, "timestamp must be an integer (milliseconds)")


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj: dict[str, Any], *, floats: bool = True) -> bytes:
    """Compact JSON as Go's json.Marshal writes it, so that a client sees KubeEdge's bytes: non-ASCII as raw
    UTF-8, and ``<``, ``>``, ``&``, U+2028, U+2029 escaped (its HTML-safe default).

    A lone surrogate (json.loads lets ``"\\ud800"`` through, say in an echoed ``event_id``) becomes U+FFFD, which
    is what Go decodes it to; left in, it could not be encoded as UTF-8 at all.

    ``floats=False``: the caller's ``obj`` holds no float, so orjson's output needs no look for one (a twentieth
    of DeviceTwin's time per update went to looking)."""
    try:
        raw: bytes | None = orjson.dumps(obj, default=_not_for_orjson, option=_ORJSON_PASSTHROUGH)
    except orjson.JSONEncodeError:
        raw = None  # what orjson does not take (a lone surrogate, an int over 64 bits, deep nesting): json's way
    if raw is not None and (not floats or not _orjson_may_differ(raw)):
        if raw.isascii():
            return raw if b"<" not in raw and b">" not in raw and b"&" not in raw else _go_escaped(raw.decode())
        return _go_escaped(raw.decode())
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _go_escaped(_LONE_SURROGATE.sub("\ufffd", text))


_ORJSON_PASSTHROUGH = (orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                       | orjson.OPT_PASSTHROUGH_SUBCLASS)
"""Types orjson would write and json refuses or writes otherwise (dataclasses, datetimes, subclasses of str, int,
dict and list) go to ``_not_for_orjson``, and so the json way. (It also writes a UUID or a plain Enum, which json
refuses; no answer holds either.)"""
_FLOAT_WITH_POINT = re.compile(rb"\.[0-9]+[,}\]]")
_FLOAT_WITH_EXPONENT = re.compile(rb"e[-+][0-9]+[,}\]]")


def _orjson_may_differ(raw: bytes) -> bool:
    """A float (orjson writes 1e-05 as 0.00001, NaN and infinities as null) or a null in orjson's output: it is
    then written again the json way, so that a float reads as it always did. Every float orjson writes has a point
    or a signed exponent, and ends where a value ends; a string ends with a quote. Twin values are strings, so an
    update's answers have neither. Two searches that each begin with a literal, and a substring test: one pattern
    with alternatives took 16 us on a 1.3 KB answer, these take 2.6."""
    return b"null" in raw or _FLOAT_WITH_POINT.search(raw) is not None or _FLOAT_WITH_EXPONENT.search(raw) is not None


def _not_for_orjson(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is written the json way")


def _go_escaped(text: str) -> bytes:
    return _GO_ESCAPED.sub(lambda m: _GO_ESCAPES[m.group()], text).encode()


def event_id_of(obj: dict[str, Any]) -> str:
    value = obj.get("event_id", "")
    return value if isinstance(value, str) else ""


_NAMES_TAKEN: set[str] = set()
"""Property names that passed ``_NAME``: a device names the same few in every update, and matching them was a fifth
of the pattern matches per update. Bounded, so that a device inventing names cannot grow it without end."""
_NAMES_KEPT = 4096


def check_name(name: Any) -> str:
    if name in _NAMES_TAKEN:
        return name  # type: ignore[no-any-return]  # only strings get in
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise TwinError(BAD_REQUEST, REASON_KEY)
    if len(_NAMES_TAKEN) < _NAMES_KEPT:
        _NAMES_TAKEN.add(name)
    return name


def check_pattern(value: str) -> str:
    """KubeEdge checks the characters of every non-empty value a device sends before anything else."""
    if value != "" and _VALUE.fullmatch(value) is None:
        raise TwinError(BAD_REQUEST, REASON_VALUE)
    return value


def type_error(value: str, kind: str) -> str | None:
    """Why ``value`` is not a ``kind`` in KubeEdge's words (dtcommon.ValidateValue), None when it is."""
    if kind in ("", "string", "bytes", "stream", "deleted"):
        return None
    if kind in ("int", "integer"):
        return None if _GO_INT.fullmatch(value) and -INT64 <= int(value) < INT64 else REASON_NOT_INT
    if kind in ("float", "double"):
        if not _GO_FLOAT.fullmatch(value):
            return REASON_NOT_FLOAT
        if len(value) < _FITS_FLOAT64 and "e" not in value and "E" not in value:
            return None  # no exponent and under 308 digits: cannot overflow (the usual reading takes this way)
        # Go's ParseFloat refuses what overflows a float64 (ErrRange); Python gives inf.
        named = value.lstrip("-").lower() in ("inf", "infinity", "nan")
        return None if named or abs(float(value)) != float("inf") else REASON_NOT_FLOAT
    if kind == "boolean":
        return None if value in ("true", "false") else REASON_NOT_BOOL
    return REASON_TYPE


def check_value(value: str, kind: str) -> str:
    why = type_error(value, kind)
    if why is not None:
        raise TwinError(BAD_REQUEST, why)
    return value


@dataclass(slots=True)
class PropUpdate:
    """One property of a twin/update: new actual and/or expected value (None: not given). Not changed once made,
    but not frozen: one is made per property of every update, and a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__`` (three times the time)."""

    actual: str | None
    expected: str | None
    kind: str | None
    """``metadata.type`` as sent, "" when the metadata has none, None without metadata (not checked here:
    KubeEdge uses it only for a property it creates)."""
    optional: bool | None


def parse_update(obj: dict[str, Any]) -> dict[str, PropUpdate | None]:
    """``twin`` of a twin/update: property -> change, or None to delete the property.

    Anything Go could not read into KubeEdge's DeviceTwinUpdate (a value that is no string, an entry that is no
    object, ...) is REASON_UNMARSHAL, as there; an empty ``twin`` is a valid update of nothing."""
    twin = obj.get("twin")
    if twin is None:
        raise TwinError(BAD_REQUEST, REASON_NO_TWIN)
    if not isinstance(twin, dict):
        raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
    out: dict[str, PropUpdate | None] = {}
    for name, entry in twin.items():
        if entry is None:
            out[check_name(name)] = None
            continue
        if not isinstance(entry, dict):
            raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
        check_name(name)
        # Tests of ``is None`` and plain types, not isinstance of ``dict | None``: this runs for every property of
        # every update, and a union is built and matched per call.
        meta = entry.get("metadata")
        kind: str | None = None
        if meta is not None:
            if not isinstance(meta, dict):
                raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
            kind = meta.get("type")
            if kind is None:
                kind = ""  # Go's TypeMetadata read from {} or a null type: the type "", not "not given"
            elif not isinstance(kind, str):
                raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
        expected = entry.get("expected")
        if expected is not None:
            expected = _side(expected)
        actual = entry.get("actual")
        if actual is not None:
            actual = _side(actual)
        optional = entry.get("optional")
        if optional is not None and optional is not True and optional is not False:
            raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
        if "expected_version" in entry or "actual_version" in entry:  # TwinVersion: read, not used for an update
            for version in ("expected_version", "actual_version"):
                _go_struct(entry.get(version), ("cloud", "edge"))
        out[name] = PropUpdate(actual, expected, kind, optional)
    return out


def _side(part: Any) -> str:
    """An entry's ``expected`` or ``actual`` (given: not None): its value, checked."""
    # A side without a value is refused: KubeEdge's edge dereferences the missing value and fails.
    if type(part) is not dict:
        raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
    value = part.get("value")
    if type(value) is not str:
        raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
    metadata = part.get("metadata")
    if metadata is not None:
        _go_struct(metadata, ("timestamp",))  # ValueMetadata: read, then stamped anew
    return check_pattern(value)


def _go_struct(value: Any, int64_fields: tuple[str, ...]) -> None:
    """REASON_UNMARSHAL unless Go reads ``value`` into a struct of these int64 fields (null, or an object whose
    fields are null or integers that fit; other keys are ignored there)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)
    for name in int64_fields:
        number = value.get(name)
        if number is not None and (type(number) is not int or not -INT64 <= number < INT64):
            raise TwinError(BAD_REQUEST, REASON_UNMARSHAL)


def parse_state(obj: dict[str, Any]) -> str:
    """The state as sent (KubeEdge stores and echoes it unchanged; it checks the lower-cased one)."""
    state = obj.get("state")
    if not isinstance(state, str) or state.lower() not in STATES:
        raise TwinError(BAD_REQUEST, f"state must be one of {sorted(STATES)}")
    return state


# -- answers ---------------------------------------------------------------------------------


def error(event_id: str, code: int, reason: str) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": now_ms(), "code": code, "reason": reason}


def _value(value: str, ts: int) -> dict[str, Any]:
    return {"value": value, "metadata": {"timestamp": ts} if ts else {}}


def entry(expected: str | None, expected_ts: int, actual: str | None, actual_ts: int, kind: str,
          optional: bool, *, set_only: bool = False) -> dict[str, Any]:
    """One property as KubeEdge shows it: no versions; an empty value, timestamp or type left out as there.

    ``set_only``: what a twin/update/result says of an existing property, only the sides the request set
    (``None``: not set; KubeEdge's sync result), even an empty value."""
    out: dict[str, Any] = {}
    if expected is not None and (expected or set_only):
        out["expected"] = _value(expected, expected_ts)
    if actual is not None and (actual or set_only):
        out["actual"] = _value(actual, actual_ts)
    out["optional"] = optional
    out["metadata"] = {"type": kind} if kind else {}
    return out


def _sorted(mapping: dict[str, Any]) -> dict[str, Any]:
    """A Go map as json.Marshal writes it: keys sorted (byte order of UTF-8, which for str is code point order).
    Only maps: the top-level keys follow Go's struct field order, which the builders write already."""
    return dict(sorted(mapping.items()))


def result(event_id: str, twin: dict[str, Any]) -> dict[str, Any]:
    """twin/update/result: the properties the request changed (null for deleted ones)."""
    return {"event_id": event_id, "timestamp": now_ms(), "twin": _sorted(twin)}


def document(event_id: str, changes: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """twin/update/document: for each changed property, its ``last`` and ``current`` entry."""
    return {"event_id": event_id, "timestamp": now_ms(),
            "twin": _sorted({k: {"last": last, "current": current} for k, (last, current) in changes.items()})}


def delta(twin: dict[str, dict[str, Any]], *, settled: bool = False) -> dict[str, Any] | None:
    """twin/update/delta: every property with an expected value, and ``delta`` where expected != actual (a
    map of strings, as KubeEdge's DeviceTwinDelta: never a null, which a Go client would read as "").

    None when there is nothing to say, unless ``settled``: then the message with ``"delta":{}`` (KubeEdge's
    DeviceTwinDelta shape, a map never omitted), which replaces a retained delta that no longer holds with one
    that says there is nothing to do.
    """
    with_expected = {k: v for k, v in twin.items() if "expected" in v}
    differing: dict[str, str] = {
        k: v["expected"]["value"] for k, v in with_expected.items()
        if v["expected"]["value"] != (v.get("actual") or {}).get("value")}
    if not differing and not settled:
        return None
    return {"event_id": new_event_id(), "timestamp": now_ms(), "twin": _sorted(with_expected),
            "delta": _sorted(differing)}


def get_result(event_id: str, twin: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": now_ms(), "twin": _sorted(twin)}


def state_result(name: str, state: str, last_online: str) -> dict[str, Any]:
    """state/update/result: KubeEdge's DeviceMsg, whose device uses the cloud's ``lastOnlineTime`` spelling."""
    device: dict[str, Any] = {"name": name}
    if state:
        device["state"] = state
    if last_online:
        device["lastOnlineTime"] = last_online
    return {"event_id": new_event_id(), "timestamp": now_ms(), "device": device}


def membership_device(device_id: str, name: str, description: str = "", state: str = "",
                      last_online: str = "") -> dict[str, Any]:
    """A device in membership messages: KubeEdge's Device, every field left out when empty."""
    out: dict[str, Any] = {"id": device_id, "name": name}
    for key, value in (("description", description), ("state", state), ("last_online", last_online)):
        if value:
            out[key] = value
    return out


def membership_get_result(event_id: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    """membership/get/result: ``devices`` is a list, ``[]`` when the node has none (KubeEdge makes it)."""
    return {"event_id": event_id, "timestamp": now_ms(), "devices": devices}


def membership_updated(added: list[dict[str, Any]], removed: list[dict[str, Any]]) -> dict[str, Any]:
    """membership/updated: the side with no device is ``null`` (a nil Go slice), not ``[]``."""
    return {"event_id": new_event_id(), "timestamp": now_ms(), "added_devices": added or None,
            "removed_devices": removed or None}
