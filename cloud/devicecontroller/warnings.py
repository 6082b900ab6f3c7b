"""A Warning Event on a Device whose spec a node will refuse, so that ``kubectl describe device`` says why.

The checks a node makes on a Device (schemas/devices.py, strict) are made here too as each Device arrives
or changes; the first refusal (its field and reason) becomes one Event per version of the spec (the
object's uid and ``metadata.generation``: status writes change the resourceVersion, not the generation, and
must not repeat the warning). The node still
refuses it on its own: this only tells the person who applied it, where they look. It matters most for what
the CRD cannot refuse on an API server without CEL, such as ``spec.methods`` naming a property the device
lacks.
"""

from __future__ import annotations

import logging
from typing import Any

from cloud.kube import DEVICES, Kube, KubeError
from schemas.devices import Device
from schemas.fields import BodyError
from schemas.timefmt import now_rfc3339

log = logging.getLogger(__name__)

REASON = "InvalidDevice"
COMPONENT = "devicecontroller"
WARNED_MEMORY = 65536
"""Devices whose last checked spec version is remembered."""


def refusal(obj: dict[str, Any]) -> BodyError | None:
    """What a node will refuse in this Device (None: nothing)."""
    try:
        Device.parse(obj)
    except BodyError as exc:
        return exc
    return None


def spec_version(obj: dict[str, Any]) -> str:
    """The Device's uid and generation: one per version of its spec."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('uid') or ''}-{meta.get('generation') or 0}"


def warning_event(obj: dict[str, Any], why: BodyError) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    rv = str(meta.get("resourceVersion") or "0")
    stamp = now_rfc3339()
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.invalid-{spec_version(obj)}",
                         "namespace": meta.get("namespace")},
            "involvedObject": {"apiVersion": DEVICES, "kind": "Device", "name": meta.get("name"),
                               "namespace": meta.get("namespace"), "uid": meta.get("uid"), "resourceVersion": rv},
            "reason": REASON, "type": "Warning", "source": {"component": COMPONENT},
            "message": f"the node will refuse this Device: {why}",
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1}


def warn_if_refused(kube: Kube, obj: dict[str, Any], warned: dict[tuple[str, str], str] | None = None
                    ) -> BodyError | None:
    """Record the Warning for ``obj`` if a node will refuse it; a failed write is logged, never raised (the
    reconcile goes on: the Event only informs). ``warned``: (namespace, name) to the spec version last
    checked, so that a Device's status writes cost nothing here."""
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    if warned is not None:
        if warned.get(key) == spec_version(obj):
            return None
        if len(warned) >= WARNED_MEMORY and key not in warned:
            warned.pop(next(iter(warned)))
        warned[key] = spec_version(obj)
    why = refusal(obj)
    if why is None:
        return None
    log.warning("Device %s/%s will be refused by its node: %s", (obj.get("metadata") or {}).get("namespace"),
                (obj.get("metadata") or {}).get("name"), why)
    event = warning_event(obj, why)
    try:
        kube.create_event(str(event["metadata"]["namespace"] or ""), event)
    except KubeError as exc:
        if exc.status != 409:  # 409: this version was warned about already (a relist)
            log.warning("could not record the warning on the Device: %s", exc)
    return why
