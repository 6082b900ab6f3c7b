"""Kubernetes Events as a node records them (core/v1 ``Event``), the body of an ``event`` upsert from EdgeD.

The body is the Event itself, in the API's JSON spelling, so that what the cloud writes is what the edge
built: a node's kubelet-style recorder (edge/edged/events.py) makes one, EdgeHub's outbox keeps it (a repeat
of the same Event, same name and a higher ``count``, replaces the unsent older one), and EdgeController
creates it, or patches its count and lastTimestamp when it is a repeat. It is parsed once where it enters
each of them, and refused there with the field named.

Only what a kubelet records is taken: an Event about a Pod (in the pod's namespace) or about the Node (in
``default``, as kubelet puts node events), from ``source.component`` kubelet on ``source.host`` the node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas import kinds
from schemas.fields import STRICT, BodyError
from schemas.names import is_namespace, is_node_name, is_object_name
from schemas.resource import ResourceKey
from schemas.timefmt import parse_rfc3339

NORMAL = "Normal"
WARNING = "Warning"
TYPES = (NORMAL, WARNING)
COMPONENT = "kubelet"
NODE_EVENT_NAMESPACE = "default"
"""Where kubelet's events about its Node go: the Node has no namespace, and the recorder's default is this."""
MAX_MESSAGE = 1024
"""A node's message is cut to this (events.k8s.io's note limit): a pull error can quote a whole registry page."""
MAX_REASON = 128
_REASON = re.compile(r"[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class ObjectRef:
    """``involvedObject``: a Pod (its container through ``field_path``) or the node's own Node."""

    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None
    api_version: str = "v1"

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "name": self.name, "apiVersion": self.api_version}
        for name, value in (("namespace", self.namespace), ("uid", self.uid),
                            ("resourceVersion", self.resource_version), ("fieldPath", self.field_path)):
            if value:
                body[name] = value
        return body

    @classmethod
    def parse(cls, value: Any, where: str = "body.involvedObject") -> ObjectRef:
        ref = STRICT.body(value, where)
        kind = STRICT.required_text(ref.get("kind"), f"{where}.kind")
        if kind not in ("Pod", "Node"):
            raise BodyError(f"{where}.kind", f"must be Pod or Node (what a node's kubelet records), not {kind!r}")
        api_version = STRICT.text(ref.get("apiVersion"), f"{where}.apiVersion") or "v1"
        if api_version != "v1":
            raise BodyError(f"{where}.apiVersion", f"must be v1, not {api_version!r}")
        name = STRICT.required_text(ref.get("name"), f"{where}.name")
        if not is_object_name(name):
            raise BodyError(f"{where}.name", f"{name[:80]!r} is not an object name")
        namespace = STRICT.text(ref.get("namespace"), f"{where}.namespace") or None
        if kind == "Pod" and (namespace is None or not is_namespace(namespace)):
            raise BodyError(f"{where}.namespace", "a Pod's must be a namespace name")
        if kind == "Node" and namespace is not None:
            raise BodyError(f"{where}.namespace", "a Node has none")
        return cls(kind, name, namespace, STRICT.text(ref.get("uid"), f"{where}.uid") or None,
                   STRICT.text(ref.get("resourceVersion"), f"{where}.resourceVersion") or None,
                   STRICT.text(ref.get("fieldPath"), f"{where}.fieldPath") or None, api_version)


@dataclass(frozen=True)
class KubeEvent:
    """One Event, with the count of the times it happened (1 when new, higher for a repeat)."""

    name: str
    namespace: str
    involved: ObjectRef
    type: str
    reason: str
    message: str
    host: str
    """``source.host``: the node that recorded it."""
    first_timestamp: str
    last_timestamp: str
    count: int = 1
    component: str = COMPONENT

    def key(self) -> ResourceKey:
        """Where it travels: ``<namespace>/event/<name>``; the outbox coalesces repeats by this key."""
        return ResourceKey(self.namespace, kinds.EVENT, self.name)

    def as_body(self) -> dict[str, Any]:
        """The core/v1 Event, as the API server takes it."""
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "involvedObject": self.involved.as_body(), "reason": self.reason, "message": self.message,
                "type": self.type, "source": {"component": self.component, "host": self.host},
                "firstTimestamp": self.first_timestamp, "lastTimestamp": self.last_timestamp, "count": self.count}

    def repeat_patch(self) -> dict[str, Any]:
        """What a repeat changes in the Event the API server holds (kubelet's recorder patches these)."""
        return {"count": self.count, "lastTimestamp": self.last_timestamp, "message": self.message}

    @classmethod
    def parse(cls, body: Any, key: ResourceKey | None = None) -> KubeEvent:
        """An Event from the other side of a link; BodyError naming the first field of the wrong shape or value.
        ``key``: the envelope's resource key, which must name this Event."""
        found = STRICT.body(body)
        metadata = STRICT.body(found.get("metadata"), "body.metadata")
        name = STRICT.required_text(metadata.get("name"), "body.metadata.name")
        namespace = STRICT.required_text(metadata.get("namespace"), "body.metadata.namespace")
        if not is_object_name(name):
            raise BodyError("body.metadata.name", f"{name[:80]!r} is not an object name")
        if not is_namespace(namespace):
            raise BodyError("body.metadata.namespace", f"{namespace[:80]!r} is not a namespace name")
        if key is not None and (key.kind != kinds.EVENT or key.name != name or key.namespace != namespace):
            raise BodyError("body.metadata", f"names {namespace}/{name}, but the envelope is about {key}")
        involved = ObjectRef.parse(found.get("involvedObject"))
        expected = NODE_EVENT_NAMESPACE if involved.kind == "Node" else involved.namespace
        if namespace != expected:
            raise BodyError("body.metadata.namespace", f"an event about a {involved.kind} goes in {expected!r}, "
                                                       f"not {namespace!r}")
        kind = STRICT.required_text(found.get("type"), "body.type")
        if kind not in TYPES:
            raise BodyError("body.type", f"must be Normal or Warning, not {kind[:40]!r}")
        reason = STRICT.required_text(found.get("reason"), "body.reason")
        if len(reason) > MAX_REASON or not _REASON.fullmatch(reason):
            raise BodyError("body.reason", "must be a CamelCase word of at most 128 letters and digits")
        message = STRICT.text(found.get("message"), "body.message") or ""
        if len(message) > MAX_MESSAGE:
            raise BodyError("body.message", f"is longer than {MAX_MESSAGE} characters")
        source = STRICT.body(found.get("source"), "body.source")
        component = STRICT.required_text(source.get("component"), "body.source.component")
        host = STRICT.required_text(source.get("host"), "body.source.host")
        if not is_node_name(host):
            raise BodyError("body.source.host", f"{host[:80]!r} is not a node name")
        first, last = (_time(found.get(f), f"body.{f}") for f in ("firstTimestamp", "lastTimestamp"))
        count = STRICT.integer(found.get("count"), "body.count")
        if count is None or count < 1:
            raise BodyError("body.count", "must be an integer of at least 1")
        return cls(name, namespace, involved, kind, reason, message, host, first, last, count, component)


def _time(value: Any, where: str) -> str:
    text = STRICT.required_text(value, where)
    if parse_rfc3339(text) is None:
        raise BodyError(where, f"{text[:40]!r} is not an RFC 3339 time in UTC")
    return text


def clip_message(message: str) -> str:
    """A message as an Event carries it: at most MAX_MESSAGE characters."""
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 3] + "..."
