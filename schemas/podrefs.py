"""Which ConfigMaps, Secrets and PersistentVolumeClaims a Pod refers to: the cloud sends them only to the nodes
that need them, and the edge rewrites a pod's files when one of them changes."""

from __future__ import annotations

import contextlib
from typing import Any

from schemas.kinds import CONFIGMAP, PVC, SECRET
from schemas.kubeobj import meta
from schemas.resource import ResourceKey


def config_refs(pod: dict[str, Any]) -> frozenset[ResourceKey]:
    """Volumes (configMap, secret, projected, persistentVolumeClaim), env valueFrom, envFrom and
    imagePullSecrets. (The PersistentVolume behind a claim is the claim's reference: volumeclaims.Claim.)"""
    found: set[tuple[str, Any]] = set()
    spec = pod.get("spec") or {}
    ns = meta(pod).namespace or "default"
    for vol in spec.get("volumes") or []:
        if (vol.get("configMap") or {}).get("name"):
            found.add((CONFIGMAP, vol["configMap"]["name"]))
        if (vol.get("secret") or {}).get("secretName"):
            found.add((SECRET, vol["secret"]["secretName"]))
        for source in (vol.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                found.add((CONFIGMAP, source["configMap"]["name"]))
            if (source.get("secret") or {}).get("name"):
                found.add((SECRET, source["secret"]["name"]))
        if (vol.get("persistentVolumeClaim") or {}).get("claimName"):
            found.add((PVC, vol["persistentVolumeClaim"]["claimName"]))
    for secret in spec.get("imagePullSecrets") or []:
        if secret.get("name"):
            found.add((SECRET, secret["name"]))
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for source in c.get("envFrom") or []:
            if (source.get("configMapRef") or {}).get("name"):
                found.add((CONFIGMAP, source["configMapRef"]["name"]))
            if (source.get("secretRef") or {}).get("name"):
                found.add((SECRET, source["secretRef"]["name"]))
        for item in c.get("env") or []:
            src = item.get("valueFrom") or {}
            if (src.get("configMapKeyRef") or {}).get("name"):
                found.add((CONFIGMAP, src["configMapKeyRef"]["name"]))
            if (src.get("secretKeyRef") or {}).get("name"):
                found.add((SECRET, src["secretKeyRef"]["name"]))
    keys: set[ResourceKey] = set()
    for kind, name in found:
        with contextlib.suppress(ValueError):
            keys.add(ResourceKey(ns, kind, str(name)))
    return frozenset(keys)
