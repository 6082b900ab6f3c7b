"""PersistentVolumeClaims and PersistentVolumes as edgehive reads them: which volume a claim is bound to, and
where a volume's data lives.

The cloud reads a claim's ``spec.volumeName`` to send a node the volume behind it; EdgeD
reads both where they enter it (``parse``: BodyError naming the field) and mounts the
volume's directory. Which volume types a node can mount is EdgeD's decision, not this
module's: here a volume only says what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from schemas.fields import LENIENT, STRICT, Reader
from schemas.kinds import PV
from schemas.kubeobj import ObjectMeta, named
from schemas.resource import ResourceKey


class _Object:
    """How both kinds are read: ``parse`` where one enters a component, ``view`` of one already checked."""

    __slots__ = ()

    @classmethod
    def read(cls, obj: dict[str, Any], metadata: ObjectMeta, reader: Reader) -> Self:
        raise NotImplementedError

    @classmethod
    def parse(cls, obj: Any, key: ResourceKey) -> Self:
        """From the other side of a link; BodyError for a field of the wrong shape."""
        body, metadata = named(obj, key)
        return cls.read(body, metadata, STRICT)

    @classmethod
    def view(cls, obj: Any) -> Self:
        """Already checked (by the API server, or where it entered)."""
        body = LENIENT.body(obj)
        return cls.read(body, ObjectMeta.read(body.get("metadata"), LENIENT), LENIENT)


@dataclass(frozen=True, slots=True)
class Claim(_Object):
    """A PersistentVolumeClaim: the volume it names (``spec.volumeName``) and its binding phase."""

    meta: ObjectMeta
    volume_name: str | None
    phase: str | None  # status.phase: Pending, Bound or Lost
    obj: dict[str, Any]

    @classmethod
    def read(cls, obj: dict[str, Any], metadata: ObjectMeta, reader: Reader) -> Self:
        spec = reader.mapping(obj.get("spec"), "body.spec")
        status = reader.mapping(obj.get("status"), "body.status")
        return cls(metadata, reader.text(spec.get("volumeName"), "body.spec.volumeName") or None,
                   reader.text(status.get("phase"), "body.status.phase"), obj)

    @property
    def bound(self) -> bool:
        return self.phase == "Bound" and self.volume_name is not None

    def volume_key(self) -> ResourceKey | None:
        """The PersistentVolume this claim names (cluster-scoped), or None while it names none."""
        try:
            return ResourceKey(None, PV, self.volume_name) if self.volume_name else None
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class ClaimRef:
    namespace: str | None
    name: str | None
    uid: str | None


@dataclass(frozen=True, slots=True)
class Volume(_Object):
    """A PersistentVolume: its source (the one key of ``spec`` that names a volume type), the claim it is bound
    to, and the node affinity of a local volume."""

    meta: ObjectMeta
    source_type: str | None  # hostPath, local, nfs, csi, ... (None: the spec names no source)
    path: str | None  # hostPath.path or local.path
    host_path_type: str | None  # hostPath.type: "", Directory, DirectoryOrCreate, File, ...
    volume_mode: str | None  # Filesystem (the default) or Block
    claim: ClaimRef | None
    node_selector_terms: list[dict[str, Any]]  # spec.nodeAffinity.required.nodeSelectorTerms
    obj: dict[str, Any]

    @classmethod
    def read(cls, obj: dict[str, Any], metadata: ObjectMeta, reader: Reader) -> Self:
        spec = reader.mapping(obj.get("spec"), "body.spec")
        sources = sorted(k for k in spec if k not in _NOT_SOURCES)
        source_type = sources[0] if sources else None
        path = host_path_type = None
        if source_type in ("hostPath", "local"):
            source = reader.mapping(spec.get(source_type), f"body.spec.{source_type}")
            path = reader.required_text(source.get("path"), f"body.spec.{source_type}.path") or None
            host_path_type = reader.text(source.get("type"), f"body.spec.{source_type}.type")
        ref = spec.get("claimRef")
        claim = None
        if ref is not None:
            found = reader.mapping(ref, "body.spec.claimRef")
            claim = ClaimRef(reader.text(found.get("namespace"), "body.spec.claimRef.namespace"),
                             reader.text(found.get("name"), "body.spec.claimRef.name"),
                             reader.text(found.get("uid"), "body.spec.claimRef.uid"))
        affinity = reader.mapping(spec.get("nodeAffinity"), "body.spec.nodeAffinity")
        required = reader.mapping(affinity.get("required"), "body.spec.nodeAffinity.required")
        terms = reader.mappings(required.get("nodeSelectorTerms"), "body.spec.nodeAffinity.required.nodeSelectorTerms")
        return cls(metadata, source_type, path, host_path_type,
                   reader.text(spec.get("volumeMode"), "body.spec.volumeMode"), claim, terms, obj)


_NOT_SOURCES = frozenset({"accessModes", "capacity", "claimRef", "mountOptions", "nodeAffinity",
                          "persistentVolumeReclaimPolicy", "storageClassName", "volumeMode"})
"""The fields of a PersistentVolumeSpec that are not a volume source."""
