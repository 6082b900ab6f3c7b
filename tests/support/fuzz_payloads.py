"""Payloads that bad input is made of, shared by the in-process fuzz tests (tests/unit/test_fuzz_decoders.py)
and the fuzz tests on real processes (tests/resilience/test_fuzz.py).

Hypothesis strategies for raw bytes, msgpack of wrong shapes, deep nesting, payloads near and over the size
limits, envelopes with exactly one field wrong, KubeEdge twin JSON with exactly one thing wrong, Device
objects malformed below their metadata, envelopes MetaManager must refuse (with the code it must answer)
and answers EventBus must not publish. Both layers send the same payloads: one checks the parsers and the
component logic, the other the processes around them.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import msgpack
from hypothesis import strategies as st

from schemas import twin
from schemas.envelope import DEFAULT_MAX_SIZE, FIELDS, Envelope, Group, Op
from schemas.names import is_module_name, is_node_name
from schemas.resource import ResourceKey, ResourceKeyError

NODE = "edge-1"
OTHER_NODE = "edge-2"
NS = "default"
DEVICE = "thermo-1"
"""The device every fuzzed node knows (tests/resilience/test_fuzz.py registers the same one)."""

# -- shapes ---------------------------------------------------------------------------------------------


def deep_list(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_map(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


deep_values = st.builds(lambda depth, as_map: deep_map(depth) if as_map else deep_list(depth),
                        st.integers(100, 1000), st.booleans())
"""Nested 100 to 1000 levels: still msgpack (which decodes up to 1024), deeper than repr() or json go."""

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=30)
           | st.binary(max_size=30))
msgpack_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), inner, max_size=4),
                              max_leaves=16)
not_a_string = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.binary(max_size=20)
                | st.lists(st.integers(-(2**63), 2**63), max_size=3)
                | st.dictionaries(st.text(max_size=5), st.integers(-9, 9), max_size=2)
                | deep_values)


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def base_map(**fields: Any) -> dict[str, Any]:
    """A valid envelope as a map; ``fields`` replace or add fields."""
    envelope = Envelope(node=NODE, src="fuzzer", group=Group.RESOURCE, op=Op.INSERT,
                        res=ResourceKey(NS, "configmap", "fz-cm"), rv="5", parent="p-1", body={"data": {}})
    return {**envelope.to_map(), "id": Envelope(node=NODE, src="x", group=Group.HUB, op=Op.QUERY).id, **fields}


# -- payloads that are not envelopes at all -------------------------------------------------------------

not_envelopes = st.one_of(
    st.binary(max_size=600),
    msgpack_values.filter(lambda v: not isinstance(v, dict)).map(pack),  # ints, lists, strings, nil
    st.dictionaries(st.text(max_size=10).filter(lambda k: k not in FIELDS), msgpack_values, min_size=1,
                    max_size=5).map(pack),  # maps of unknown keys
    st.integers(1, 5000).map(lambda n: b"\x91" * n + b"\xc0"),  # nested arrays, beyond msgpack's 1024 too
    st.integers(1, 3000).map(lambda n: b"\x81\xa1a" * n + b"\xc0"),  # nested maps
    st.integers(1, 40).map(lambda n: pack(base_map())[:-n]),  # a valid envelope cut short
    st.builds(lambda extra: pack(base_map()) + extra, st.binary(min_size=1, max_size=20)),  # trailing bytes
    st.just(b""),
)
"""Bytes that must be refused as a whole (field ``payload`` or an unknown key)."""


def oversized(max_size: int = DEFAULT_MAX_SIZE) -> st.SearchStrategy[bytes]:
    """A valid envelope whose encoding is over the size limit by 1 byte to 4 KiB."""
    overhead = len(pack(base_map(body="")))
    return st.integers(1, 4096).map(lambda over: pack(base_map(body="x" * (max_size - overhead + over + 8))))


# -- envelopes with exactly one field wrong -------------------------------------------------------------


def _valid_key(text: str) -> bool:
    try:
        ResourceKey.parse(text)
    except ResourceKeyError:
        return False
    return True


_ID_CHARS = string.ascii_letters + string.digits + "._:-"
bad_ids = st.one_of(st.sampled_from(["", "x" * 65, "a b", "é", "a/b", "a\x00", "+", "#"]),
                    st.text(max_size=70).filter(lambda t: not (0 < len(t) <= 64 and all(c in _ID_CHARS for c in t))),
                    not_a_string)
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "v": st.one_of(st.sampled_from([0, 2, -1, 2**64 - 1, "1", 1.0, True, None]),
                   not_a_string.filter(lambda x: not (type(x) is int and x == 1))),
    "id": bad_ids,
    "parent": bad_ids.filter(lambda x: x is not None),  # an absent parent is fine
    "ts": st.one_of(st.sampled_from([-1, 2**63, 2**64 - 1, 1.5, "1", True, False, None]),
                    not_a_string.filter(lambda x: type(x) is not int)),
    "node": st.one_of(st.sampled_from(["", "Edge-1", "edge_1", "a/b", "+", "#", "x" * 254, "-edge", "edge-1\x00",
                                       "edge-1/down", "é"]),
                      st.text(max_size=30).filter(lambda t: not is_node_name(t)), not_a_string),
    "src": st.one_of(st.sampled_from(["", "Fuzzer", "1abc", "a/b", "a" * 64, "-x", "+", "#"]),
                     st.text(max_size=30).filter(lambda t: not is_module_name(t)), not_a_string),
    "group": st.one_of(st.text(max_size=12).filter(lambda t: t not in {g.value for g in Group}), not_a_string),
    "op": st.one_of(st.text(max_size=12).filter(lambda t: t not in {o.value for o in Op}), not_a_string),
    "res": st.one_of(st.sampled_from(["a/b", "a/b/c/d", "default/Pod/x", "default/pod/", "-/pod/x/", "UPPER/pod/x",
                                      "default/pod/" + "x" * 300, "default/po d/x", "//", "default/pod/+"]),
                     st.text(max_size=40).filter(lambda t: not _valid_key(t)),
                     not_a_string.filter(lambda x: x is not None)),  # an absent resource is fine
    "rv": st.one_of(st.sampled_from(["", "x" * 65]), st.text(min_size=65, max_size=100),
                    not_a_string.filter(lambda x: x is not None)),
}
REQUIRED = ("v", "id", "ts", "node", "src", "group", "op")


@st.composite
def broken_envelopes(draw: st.DrawFn, base: Callable[[], dict[str, Any]] = base_map) -> tuple[bytes, str]:
    """A valid envelope with one field wrong, missing or unknown; returns its bytes and the field to blame."""
    raw = base()
    how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "unknown"]))
    if how == "drop":
        name = draw(st.sampled_from(REQUIRED))
        del raw[name]
    elif how == "unknown":
        name = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS))
        raw[name] = draw(msgpack_values)
    else:
        name = draw(st.sampled_from(sorted(BAD_VALUES)))
        raw[name] = draw(BAD_VALUES[name])
    return pack(raw), name


# -- KubeEdge twin JSON with one thing wrong --------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(
    max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_VALUE_CHARS = string.ascii_letters + string.digits + "-_.,:/@#"
bad_twin_values = st.one_of(
    json_values.filter(lambda v: not isinstance(v, str) and v is not None),  # numbers, booleans, lists, maps
    st.text(min_size=1, max_size=40).filter(lambda t: any(c not in _VALUE_CHARS for c in t)),
    st.integers(513, 3000).map(lambda n: "1" * n),  # too long
    st.sampled_from(["abc", "1.2.3", "--", "nanx"]),  # not a float (the property is a FLOAT in the model)
)
bad_prop_names = st.one_of(st.just(""), st.just("x" * 129),
                           st.text(min_size=1, max_size=20).filter(lambda t: any(c not in _VALUE_CHARS for c in t)))
unhashable = st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)


def reading(value: Any = "23.5", **entry: Any) -> dict[str, Any]:
    """A twin entry reporting ``value`` for the FLOAT property; ``entry`` adds or replaces its fields."""
    return {"actual": {"value": value}, "metadata": {"type": "float"}, **entry}


@st.composite
def bad_twin_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A twin/update for ``temperature`` (FLOAT) that must be refused whole, with a 400."""
    event = draw(json_values)
    entry: Any
    name = "temperature"
    match draw(st.integers(0, 8)):
        case 0:
            entry = reading(draw(bad_twin_values))
        case 1:
            entry = {"actual": draw(json_values.filter(lambda v: not isinstance(v, dict) and v is not None)
                                    | st.dictionaries(st.sampled_from(["val", "Value", ""]), json_values,
                                                      max_size=2)),
                     "metadata": {"type": "float"}}
        case 2:
            # A type outside KubeEdge's list for a property the device creates (KubeEdge ignores the type a
            # device sends for a property that exists), or a type that is no string.
            name = "fz-new"
            entry = {**reading(), "metadata": {"type": draw(st.text(max_size=10).filter(lambda t: t not in twin.TYPES)
                                                             | unhashable | st.integers())}}
        case 3:
            entry = reading(optional=draw(json_values.filter(lambda v: v is not None and not isinstance(v, bool))))
        case 4:
            entry = draw(json_values.filter(lambda v: v is not None and not isinstance(v, dict)))
        case 5:  # a property the device creates, with a value that is not of the type it declares
            name = "fz-new"
            entry = {"actual": {"value": draw(st.sampled_from(["abc", "1.5", "yes"]))},
                     "metadata": {"type": draw(st.sampled_from(["int", "integer", "boolean"]))}}
        case 6:
            name = draw(bad_prop_names)
            entry = reading()
        case 7:
            entry = reading(deep_list(draw(st.integers(50, 400))))
        case _:
            return {"event_id": event, "twin": draw(st.none() | json_values.filter(
                lambda v: not isinstance(v, dict)))}
    return {"event_id": event, "timestamp": draw(json_values), "twin": {name: entry}}


def as_json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


bad_twin_updates = st.one_of(
    bad_twin_objects().map(as_json),
    st.binary(max_size=300),  # almost never JSON
    st.binary(min_size=1, max_size=30).map(lambda b: b'{"event_id":"\xff' + b + b'","twin":{}}'),  # not UTF-8
    json_values.filter(lambda v: not isinstance(v, dict)).map(as_json),  # arrays and scalars
    st.integers(100, 30000).map(lambda n: b"[" * n + b"]" * n),  # nested up to the 64 KiB limit
    st.integers(100, 10000).map(lambda n: b'{"twin":{"temperature":{"actual":{"value":' + b'{"a":' * n + b"1"
                                + b"}" * n + b"}}}}"),
    st.integers(4400, 20000).map(lambda n: b'{"twin":{"temperature":{"actual":{"value":' + b"9" * n + b"}}}}"),
    st.integers(twin.MAX_JSON_BYTES - 30, twin.MAX_JSON_BYTES + 4000).map(
        lambda n: as_json({"twin": {"temperature": reading()}, "pad": "x" * n})),  # over the size limit
)
"""twin/update payloads that must be refused with a 400 (also by a device the node knows)."""

bad_state_updates = st.one_of(
    st.binary(max_size=200),
    json_values.filter(lambda v: not isinstance(v, dict)).map(as_json),
    st.builds(lambda s, e: as_json({"event_id": e, "state": s}),
              json_values.filter(lambda v: not (isinstance(v, str) and v.lower() in twin.STATES)), json_values),
    st.integers(100, 30000).map(lambda n: b"[" * n + b"]" * n),
)
bad_json = st.one_of(st.binary(max_size=200).filter(lambda b: not is_json_object(b)),
                     json_values.filter(lambda v: not isinstance(v, dict | None)).map(as_json),
                     st.integers(100, 30000).map(lambda n: b"{" * n))


def is_json_object(data: bytes) -> bool:
    """A JSON object, or null: Go reads null into KubeEdge's request structs as an empty object, and so does
    DeviceTwin (schemas.twin.loads)."""
    try:
        return isinstance(json.loads(data), dict | None)
    except (ValueError, RecursionError):
        return False


# -- Device and DeviceModel objects from the cloud, malformed below their metadata -------------------------

@st.composite
def malformed_devices(draw: st.DrawFn, name: str = "fz-dev") -> tuple[ResourceKey, dict[str, Any]]:
    """A Device or DeviceModel that passes MetaManager's check (a map whose metadata names its key) but whose
    spec has the wrong shape somewhere DeviceTwin reads it."""
    kind = draw(st.sampled_from(["device", "devicemodel"]))
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    spec: Any = {"nodeName": NODE, "deviceModelRef": {"name": "thermo"}, "properties": []}
    wrong = json_values.filter(lambda v: v is not None and not isinstance(v, dict))
    match draw(st.integers(0, 5 if kind == "device" else 2)):
        case 0:
            spec = draw(wrong)
        case 1:
            spec["properties"] = draw(json_values.filter(lambda v: v is not None and not isinstance(v, list)))
        case 2:
            meta["annotations"] = draw(wrong)
        case 3:
            spec["nodeName"] = draw(json_values.filter(lambda v: v is not None and not isinstance(v, str)))
        case 4:
            spec["deviceModelRef"] = draw(wrong | st.fixed_dictionaries(
                {"name": json_values.filter(lambda v: v is not None and not isinstance(v, str))}))
        case _:
            spec["properties"] = [{"name": "setpoint", "desired": draw(wrong)}]
    obj = {"metadata": meta, "spec": spec}
    if draw(st.booleans()):
        obj["relist"] = draw(msgpack_values)  # must not be taken for DeviceTwin's own relist message
    return ResourceKey(NS, kind, name), obj


# -- envelopes MetaManager must refuse ----------------------------------------------------------------------


def configmap(key: ResourceKey) -> dict[str, Any]:
    """A ConfigMap stored under ``key``, as the cloud sends it."""
    return {"metadata": {"name": key.name, "namespace": key.namespace, "uid": "u-1"}, "data": {"a": "1"}}


@st.composite
def refused_by_metamanager(draw: st.DrawFn) -> tuple[Envelope, int]:
    """A valid envelope from the cloud that MetaManager must refuse, and the code it must answer with."""
    fz = ResourceKey(NS, "configmap", "fz-" + draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)))
    op = draw(st.sampled_from([Op.INSERT, Op.UPDATE, Op.PATCH]))
    rv = draw(st.sampled_from(["1", "99999999999999999999999999", "-1", "²", "abc"]))
    match draw(st.integers(0, 5)):
        case 0:  # another node's object
            return Envelope(node=OTHER_NODE, src="cloudhub", group=Group.RESOURCE, op=op, res=fz, rv=rv,
                            body=configmap(fz)), 403
        case 1:  # a kind this node does not store
            kind = draw(st.sampled_from(["widget", "podstatus", "lease", "nodestatus", "event", "twin"]))
            return Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=op, res=ResourceKey(NS, kind, "x"),
                            rv=rv, body=configmap(fz)), 400
        case 2:  # an op MetaManager does not take from the cloud, or none with no resource
            return Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE,
                            op=draw(st.sampled_from([Op.KEEPALIVE, Op.UPLOAD, Op.CONNECTED, Op.RESPONSE, Op.ERROR,
                                                     Op.QUERY, Op.DISCONNECTED])), res=fz, body=configmap(fz)), 400
        case 3:
            return Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=op, res=None, body=configmap(fz)), 400
        case 4:  # a body of the wrong shape, or naming another object
            body = draw(msgpack_values.filter(lambda v: not isinstance(v, dict)) | st.just({"metadata": 5})
                        | st.just({"metadata": {"name": "other", "namespace": NS}})
                        | st.just({"metadata": {"name": fz.name, "namespace": "kube-system"}}) | st.just({})
                        | deep_values)
            return Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=op, res=fz, rv=rv, body=body), 400
        case _:  # a resync query with a bad page
            body = draw(st.fixed_dictionaries({"list": not_a_string.filter(lambda x: x is not None)})
                        | st.fixed_dictionaries({"limit": st.integers(-5, -1) | st.integers(501, 2**64 - 1)
                                                 | st.text(min_size=1, max_size=3)})
                        | st.fixed_dictionaries({"after": not_a_string.filter(lambda x: bool(x) and x is not True)}))
            return Envelope(node=NODE, src="cloudhub", group=Group.META, op=Op.QUERY, body=body), 400


# -- answers EventBus must not publish ----------------------------------------------------------------------

def bad_answer_items(too_deep: Any) -> st.SearchStrategy[Any]:
    """Items of DeviceTwin's answer list that EventBus must refuse; ``too_deep`` is a value JSON cannot write
    where the test runs (hypothesis raises the recursion limit in-process; a component keeps Python's 1000)."""
    return st.one_of(
        msgpack_values.filter(lambda v: not (isinstance(v, list) and len(v) == 4)),
        st.tuples(st.sampled_from(["", "#", "a/+/b", "$hw/events/device/+/x", "edgehive/edge/to-cloud", "x\x00y",
                                   "$hw/events/" + "x" * 70000]), st.just({}), st.just(0), st.just(False)).map(list),
        st.tuples(st.just("$hw/events/device/default/d/twin/get/result"), st.just({}),
                  st.sampled_from([3, -1, "1", None, 1.0, True]), st.just(False)).map(list),
        st.tuples(st.just("$hw/events/device/default/d/twin/get/result"),
                  st.sampled_from([too_deep, {"a": b"bytes"}, [1, 2], "text", 5]), st.just(1),
                  st.just(False)).map(list),
    )
