"""persistentVolumeClaim volumes: the claim's PersistentVolume as a directory of this node. No I/O here.

A claim must be Bound (by the cluster's PersistentVolume controller) to a volume this
node can mount: a hostPath volume, or a local volume whose node affinity takes this
node. Until the claim is bound, or while the claim or its volume has not reached the
node, the pod waits (ClaimWaiting, with the claim named); a volume of another type, or a
local volume meant for another node, is refused (ClaimRefused, with the reason), since
waiting would not change it.

volumeMode Filesystem only. A hostPath volume's ``type`` is checked (or the path made) on the host when the
pod's volumes are set up, by the rule of plain hostPath volumes (hostpaths.py); a local volume (the
administrator's disk) must exist as a directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.edged.hostpaths import HOST_PATH_TYPES
from edge.errors import EdgeError
from schemas.fields import BodyError
from schemas.kinds import PVC
from schemas.resource import ResourceKey
from schemas.volumeclaims import Claim, Volume

MOUNTABLE = ("hostPath", "local")
HOSTNAME_LABEL = "kubernetes.io/hostname"

Lookup = Callable[[ResourceKey], dict[str, Any] | None]


class ClaimWaiting(EdgeError):
    """The claim or its volume is not ready for this node yet; the pod waits."""


class ClaimRefused(EdgeError):
    """The claim's volume can never be mounted here; the pod fails."""


@dataclass(frozen=True)
class ClaimedVolume:
    claim: ResourceKey
    volume: ResourceKey
    source_type: str  # hostPath or local
    path: str
    read_only: bool
    host_path_type: str = ""  # of a hostPath volume (hostpaths.py)


def claimed_volume(volume_name: str, source: Any, namespace: str, node: str, lookup: Lookup) -> ClaimedVolume:
    """The directory behind the pod volume ``volume_name`` (``source``: its persistentVolumeClaim field)."""
    where = f"volume {volume_name}"
    if not isinstance(source, dict) or not isinstance(source.get("claimName"), str) or not source["claimName"]:
        raise ClaimRefused(f"{where}: persistentVolumeClaim.claimName is missing")
    try:
        claim_key = ResourceKey(namespace, PVC, source["claimName"])
    except ValueError:
        raise ClaimRefused(f"{where}: {source['claimName']!r} is not a claim name") from None
    found = lookup(claim_key)
    if found is None:
        raise ClaimWaiting(f'{where}: persistentvolumeclaim "{claim_key.name}" not found')
    claim = Claim.view(found)
    volume_key = claim.volume_key()
    if not claim.bound or volume_key is None:
        raise ClaimWaiting(f'{where}: persistentvolumeclaim "{claim_key.name}" is not bound '
                           f"(phase {claim.phase or 'Pending'})")
    stored = lookup(volume_key)
    if stored is None:
        raise ClaimWaiting(f'{where}: persistentvolume "{volume_key.name}" of claim "{claim_key.name}" not found')
    pv = Volume.view(stored)
    ref = pv.claim
    if ref is not None and (ref.namespace, ref.name) != (namespace, claim_key.name):
        raise ClaimWaiting(f'{where}: persistentvolume "{pv.meta.name}" is bound to claim '
                           f'{ref.namespace}/{ref.name}, not "{claim_key.name}"')
    if pv.source_type not in MOUNTABLE or pv.path is None:
        raise ClaimRefused(f'{where}: persistentvolume "{pv.meta.name}" is of type {pv.source_type or "(none)"}, '
                           f"which this node cannot mount ({' and '.join(MOUNTABLE)} volumes it can)")
    if not pv.path.startswith("/"):
        raise ClaimRefused(f'{where}: the path of persistentvolume "{pv.meta.name}" must be absolute')
    if pv.volume_mode not in (None, "Filesystem"):
        raise ClaimRefused(f'{where}: persistentvolume "{pv.meta.name}" has volumeMode {pv.volume_mode}; this node '
                           "mounts Filesystem volumes only")
    if pv.source_type == "hostPath" and (pv.host_path_type or "") not in HOST_PATH_TYPES:
        raise ClaimRefused(f'{where}: persistentvolume "{pv.meta.name}" is a hostPath of type {pv.host_path_type}, '
                           f"which is not a hostPath type ({', '.join(t for t in HOST_PATH_TYPES if t)} or none)")
    if pv.source_type == "local":
        if not pv.node_selector_terms:
            raise ClaimRefused(f'{where}: local persistentvolume "{pv.meta.name}" has no nodeAffinity')
        try:
            fits = node_matches(pv.node_selector_terms, node, {HOSTNAME_LABEL: node})
        except BodyError as exc:
            raise ClaimRefused(f'{where}: persistentvolume "{pv.meta.name}": {exc}') from None
        if not fits:
            raise ClaimRefused(f'{where}: local persistentvolume "{pv.meta.name}" has a nodeAffinity that does not '
                               f"include node {node}")
    return ClaimedVolume(claim_key, volume_key, pv.source_type, pv.path, bool(source.get("readOnly")),
                         pv.host_path_type or "")


def node_matches(terms: list[dict[str, Any]], node: str, labels: Mapping[str, str]) -> bool:
    """Whether a node selector (terms ORed, the requirements of a term ANDed) selects this node; an empty term
    selects nothing, as in Kubernetes."""
    fields = {"metadata.name": node}
    for index, term in enumerate(terms):
        where = f"nodeAffinity.required.nodeSelectorTerms[{index}]"
        expressions = term.get("matchExpressions") or []
        field_terms = term.get("matchFields") or []
        if not isinstance(expressions, list) or not isinstance(field_terms, list):
            raise BodyError(where, "matchExpressions and matchFields must be lists")
        if not expressions and not field_terms:
            continue
        if all(_requirement(r, labels, f"{where}.matchExpressions[{i}]") for i, r in enumerate(expressions)) and \
                all(_requirement(r, fields, f"{where}.matchFields[{i}]") for i, r in enumerate(field_terms)):
            return True
    return False


def _requirement(requirement: Any, labels: Mapping[str, str], where: str) -> bool:
    if not isinstance(requirement, dict) or not isinstance(requirement.get("key"), str):
        raise BodyError(where, "must be a map with a key")
    key, operator, values = requirement["key"], requirement.get("operator"), requirement.get("values") or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BodyError(f"{where}.values", "must be a list of strings")
    value = labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    raise BodyError(f"{where}.operator", f"{operator!r} is not In, NotIn, Exists, DoesNotExist, Gt or Lt")
