"""Kubernetes objects as plain maps: typed views of the parts the components read, and the checks at their door.

Objects travel as the API server's JSON, decoded into maps, and keep that form on the wire and in
the stores (the edge hands them to podman, writes them back, lists them to the cloud). What a
component reads of them goes through here: ``meta(obj)`` and the other views for an object from a
source that already checked it (never raising), ``ObjectMeta.parse`` and the ``parse`` of each
kind for one that enters a component from the other side of a link (BodyError naming the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.fields import LENIENT, STRICT, BodyError, Reader
from schemas.resource import ResourceKey

EDGE_ROLE_LABEL = "node-role.kubernetes.io/edge"
"""The label that makes a Node an edge node: the cloud places pods and devices only on such nodes."""


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """``metadata``, as far as edgehive reads it."""

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None

    @classmethod
    def read(cls, value: Any, reader: Reader, where: str = "body.metadata") -> ObjectMeta:
        m = reader.mapping(value, where)
        return cls(name=reader.text(m.get("name"), f"{where}.name"),
                   namespace=reader.text(m.get("namespace"), f"{where}.namespace"),
                   uid=reader.text(m.get("uid"), f"{where}.uid"),
                   resource_version=reader.text(m.get("resourceVersion"), f"{where}.resourceVersion"),
                   labels=reader.text_map(m.get("labels"), f"{where}.labels"),
                   annotations=reader.text_map(m.get("annotations"), f"{where}.annotations"),
                   deletion_timestamp=reader.text(m.get("deletionTimestamp"), f"{where}.deletionTimestamp"),
                   deletion_grace_period_seconds=reader.integer(m.get("deletionGracePeriodSeconds"),
                                                                f"{where}.deletionGracePeriodSeconds"))

    @classmethod
    def parse(cls, value: Any, where: str = "body.metadata") -> ObjectMeta:
        """Metadata from the other side of a link; BodyError for a field of the wrong shape."""
        return cls.read(value, STRICT, where)

    def check_names(self, key: ResourceKey, where: str = "body.metadata") -> None:
        """The object must be the one ``key`` names (cluster-scoped: any namespace, as the API server has none)."""
        if self.name != key.name:
            raise BodyError(f"{where}.name", f"is {_short(self.name)}, not {key.name!r}")
        if key.namespace is not None and self.namespace != key.namespace:
            raise BodyError(f"{where}.namespace", f"is {_short(self.namespace)}, not {key.namespace!r}")


def _short(value: str | None) -> str:
    return repr(value if value is None or len(value) <= 80 else value[:77] + "...")


def meta(obj: Any) -> ObjectMeta:
    """The metadata of an object that was checked before (by the API server, or where it entered)."""
    return ObjectMeta.read(LENIENT.mapping(obj, "").get("metadata"), LENIENT)


def spec_of(obj: Any) -> dict[str, Any]:
    """``spec`` of a checked object (empty when it has none)."""
    return LENIENT.mapping(LENIENT.mapping(obj, "").get("spec"), "spec")


def status_of(obj: Any) -> dict[str, Any]:
    """``status`` of a checked object (empty when it has none)."""
    return LENIENT.mapping(LENIENT.mapping(obj, "").get("status"), "status")


def node_name(obj: Any) -> str | None:
    """``spec.nodeName`` of a checked Pod or Device: the node it is bound to, if any."""
    return LENIENT.text(spec_of(obj).get("nodeName"), "spec.nodeName")


def conditions(obj: Any) -> list[dict[str, Any]]:
    """``status.conditions`` of a checked object."""
    return LENIENT.mappings(status_of(obj).get("conditions"), "status.conditions")


def condition_states(obj: Any) -> dict[str, str]:
    """``status.conditions`` of a checked object as type -> status (``True``, ``False``, ``Unknown``)."""
    return {c["type"]: c["status"] for c in conditions(obj)
            if isinstance(c.get("type"), str) and isinstance(c.get("status"), str)}


def deletion_body(key: ResourceKey, uid: str | None) -> dict[str, Any]:
    """The body of a delete sent to a node: which object, and which incarnation of it when the UID is known."""
    body: dict[str, Any] = {"name": key.name, "namespace": key.namespace}
    if uid is not None:
        body["uid"] = uid
    return {"metadata": body}


# -- objects as the edge receives them ------------------------------------------------------------------


def named(obj: Any, key: ResourceKey) -> tuple[dict[str, Any], ObjectMeta]:
    """An object from the other side of a link (an envelope's body) as a map, and its metadata, which must name
    ``key`` (the key it travels and is stored under); BodyError otherwise."""
    body = STRICT.body(obj)
    metadata = ObjectMeta.parse(body.get("metadata"))
    metadata.check_names(key)
    return body, metadata


@dataclass(frozen=True, slots=True)
class Pod:
    """A Pod as EdgeD takes it in: checked for what EdgeD reads of it outside planning.

    The spec's containers, volumes and the rest are judged when the pod is planned
    (edge/edged/podspec.py), where a spec the node cannot run becomes the pod's failed status,
    which is what a user sees; here, only what would otherwise break EdgeD itself.
    """

    meta: ObjectMeta
    node_name: str | None
    obj: dict[str, Any]
    """The whole object, as the kubelet plans and keeps it."""

    @classmethod
    def parse(cls, obj: Any, key: ResourceKey) -> Pod:
        body, metadata = named(obj, key)
        if not metadata.uid:
            raise BodyError("body.metadata.uid", "is missing (EdgeD tells a pod's incarnations apart by it)")
        spec = STRICT.mapping(body.get("spec"), "body.spec")
        STRICT.integer(spec.get("terminationGracePeriodSeconds"), "body.spec.terminationGracePeriodSeconds")
        STRICT.text(spec.get("restartPolicy"), "body.spec.restartPolicy")
        STRICT.mappings(spec.get("containers"), "body.spec.containers")
        return cls(metadata, STRICT.text(spec.get("nodeName"), "body.spec.nodeName"), body)


_DATA_FIELDS = {"configmap": ("data", "binaryData"), "secret": ("data", "stringData")}


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """A ConfigMap or Secret as EdgeD takes it in: its data maps hold strings (a Secret's data: base64)."""

    meta: ObjectMeta
    obj: dict[str, Any]

    @classmethod
    def parse(cls, obj: Any, key: ResourceKey) -> ConfigObject:
        body, metadata = named(obj, key)
        for name in _DATA_FIELDS.get(key.kind, ()):
            STRICT.text_map(body.get(name), f"body.{name}")
        return cls(metadata, body)
