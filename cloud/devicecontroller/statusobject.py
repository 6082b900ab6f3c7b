"""Where DeviceController writes what a device reports: the Device's own status, or its DeviceStatus object.

KubeEdge v1.23 moved a device's reported twins, state and lastOnlineTime into DeviceStatus
(devices.kubeedge.io/v1beta1), an object of its own with the Device's name and namespace and
an owner reference to it, so that frequent reports no longer rewrite the Device (every write
of a Device is an event for every Device watcher: the edge sync, kubectl, operators).
Everything written before v1.23, and ``kubectl get device -o yaml``, reads Device.status, so
a cluster picks one with DeviceController's ``--status-object``; the status is the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud.kube import DEVICES, Kube, KubeError
from schemas import kinds

DEVICE = "device"
DEVICESTATUS = "devicestatus"
STATUS_OBJECTS = (DEVICE, DEVICESTATUS)
DEFAULT = DEVICE
HELP = ("where reported twins, state and lastOnlineTime are written: 'device' (the Device's status, the default: "
        "what kubectl get device -o yaml, KubeEdge before v1.23 and every existing client read) or 'devicestatus' "
        "(KubeEdge v1.23's DeviceStatus object of the same name, owned by the Device; the Device is then not "
        "rewritten on every report)")


def check(target: str) -> None:
    """Refuse a ``--status-object`` that is neither: a typo must not silently write the other object."""
    if target not in STATUS_OBJECTS:
        raise ValueError(f"status_object {target!r} is not one of {', '.join(STATUS_OBJECTS)}")


def owned_by(device: dict[str, Any]) -> dict[str, Any]:
    """A new DeviceStatus for ``device``: same name and namespace, owned by it (it goes when the Device goes,
    through the garbage collector), with KubeEdge's empty spec."""
    meta = device.get("metadata") or {}
    return {"apiVersion": DEVICES, "kind": "DeviceStatus",
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                         "ownerReferences": [{"apiVersion": DEVICES, "kind": "Device", "name": meta.get("name"),
                                              "uid": meta.get("uid"), "controller": True}]},
            "spec": {}}


@dataclass(frozen=True)
class StatusObject:
    """Writes a status patch (``twins``, ``state``, ``lastOnlineTime``) for a Device to the chosen object."""

    kube: Kube
    target: str = DEFAULT

    def __post_init__(self) -> None:
        check(self.target)

    def write(self, device: dict[str, Any], status: dict[str, Any]) -> None:
        """Merge ``status`` into the Device's status or its DeviceStatus's; raises KubeError as the API answers.
        A missing DeviceStatus is made first (a 409 means another writer made it: the patch still applies; a 404,
        that its CRD is not served yet, which is answered as 503, for the node to send the status again)."""
        meta = device.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if self.target == DEVICE:
            self.kube.patch_custom_status(kinds.DEVICE, namespace, name, {"status": status})
            return
        try:
            self.kube.patch_custom_status(kinds.DEVICESTATUS, namespace, name, {"status": status})
            return
        except KubeError as exc:
            if exc.status != 404:
                raise
        try:
            self.kube.create_custom(kinds.DEVICESTATUS, namespace, owned_by(device))
        except KubeError as exc:
            if exc.status == 404:  # the DeviceStatus CRD is not served yet (just installed): the node sends again
                raise KubeError(503, f"DeviceStatus is not served yet: {exc.reason}") from None
            if exc.status != 409:
                raise
        self.kube.patch_custom_status(kinds.DEVICESTATUS, namespace, name, {"status": status})
