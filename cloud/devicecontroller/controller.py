"""DeviceController: Devices and DeviceModels to the nodes that serve them, and what devices report back.

Down (cloud/nodesync.py): a Device with ``spec.nodeName`` goes to that node with its
DeviceModel; a changed nodeName moves it; a deleted one leaves. Desired values
travel inside the Device object, through CloudHub's reliable delivery.

Up: a device's status (reported values, observedDesired, state, lastOnlineTime)
is checked against the DeviceModel's types and ranges and merged into the Device
status; values that do not fit are refused with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud.kube import Kube, KubeError
from cloud.nodesync import NodeSync
from cloud.placement import Placement, model_refs
from runtime.bus import Bus
from runtime.component import ComponentSettings
from schemas import crds, kinds
from schemas.envelope import Envelope, Group, Op, Send

log = logging.getLogger(__name__)

MODULE = "devicecontroller"
TRANSIENT = frozenset({0, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class DeviceControllerSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={
        "help": "API server URL to use instead of the kubeconfig's (k3s writes https://127.0.0.1:6443)"})
    install_crds: bool = field(default=True, metadata={"help": "create the devices.kubeedge.io CRDs if missing"})
    query_timeout_s: float = field(default=10.0, metadata={"help": "seconds to wait for a node's store listing"})


def check_reported(prop: dict[str, Any] | None, value: str) -> str | None:
    """Why ``value`` does not fit the model's property (None when it does)."""
    if prop is None:
        return None  # a property the model does not declare: kept as the device reports it
    kind = str(prop.get("type", "STRING")).upper()
    number: float | None = None
    try:
        if kind == "INT":
            number = int(value)
        elif kind in ("FLOAT", "DOUBLE"):
            number = float(value)
        elif kind == "BOOLEAN" and value not in ("true", "false"):
            return f"{value!r} is not a BOOLEAN"
    except ValueError:
        return f"{value!r} is not {kind}"
    if number is None:
        return None
    for bound, sign in (("minimum", 1), ("maximum", -1)):
        limit = prop.get(bound)
        if limit in (None, ""):
            continue
        try:
            if sign * (number - float(limit)) < 0:
                return f"{value} is outside the model's {bound} {limit}"
        except ValueError:
            continue
    return None


class DeviceController(NodeSync):
    module = MODULE

    def __init__(self, settings: DeviceControllerSettings, bus: Bus) -> None:
        self.settings = settings
        kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        super().__init__(kube, Placement(kinds.DEVICE, model_refs),
                         (kinds.DEVICEMODEL,), bus, query_timeout_s=settings.query_timeout_s)

    def start(self) -> None:
        if self.settings.install_crds:
            threading.Thread(target=self._install_crds, name="crds", daemon=True).start()
        super().start()

    def _install_crds(self) -> None:
        for attempt in range(60):
            try:
                self.kube.ensure_crds(crds.manifests())
                return
            except KubeError as exc:
                log.info("CRDs not installed yet (%s); retrying (%d)", exc, attempt + 1)
                threading.Event().wait(min(5.0, 0.5 * (attempt + 1)))

    def on_edge(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        key = envelope.res
        if envelope.group == Group.USER and envelope.op == Op.UPLOAD:
            self.bus.counters.inc("uploads")
            return [self.reply(envelope.reply(MODULE, {"ok": True}))]
        if key is None or key.kind != kinds.DEVICESTATUS or envelope.op not in (Op.UPDATE, Op.PATCH):
            return [self.reply(envelope.reply(MODULE, {"ignored": True}))]
        device = self.informers[kinds.DEVICE].get(key.namespace, key.name)
        if device is None:
            return [self.reply(envelope.error(MODULE, 404, f"Device {key.namespace}/{key.name} does not exist"))]
        if (device.get("spec") or {}).get("nodeName") != envelope.node:
            return [self.reply(envelope.error(MODULE, 403, f"Device {key.namespace}/{key.name} is not bound to "
                                                           f"{envelope.node}"))]
        status = (envelope.body or {}).get("status") if isinstance(envelope.body, dict) else None
        if not isinstance(status, dict):
            return [self.reply(envelope.error(MODULE, 400, "a device status must carry a status map"))]
        model_name = ((device.get("spec") or {}).get("deviceModelRef") or {}).get("name")
        model = self.informers[kinds.DEVICEMODEL].get(key.namespace, str(model_name)) if model_name else None
        props = {p.get("name"): p for p in ((model or {}).get("spec") or {}).get("properties") or []
                 if isinstance(p, dict)}
        reported_twins = status.get("twins")
        # Checked before use: twins or reported values of another shape would raise in this handler
        # (AttributeError, TypeError, RecursionError from str() of a deeply nested value), so the node's entry
        # would never be answered and would come back for ever.
        if not isinstance(reported_twins, list | None) or not all(
                not isinstance(t, dict) or (isinstance(t.get("reported"), dict | None) and isinstance(
                    (t.get("reported") or {}).get("value"), str | None)) for t in reported_twins or []):
            return [self.reply(envelope.error(MODULE, 400, "status.twins must be a list of twins whose reported "
                                                           "value is a string"))]
        twins, refused = [], []
        for reported_twin in reported_twins or []:
            if not isinstance(reported_twin, dict) or not isinstance(reported_twin.get("propertyName"), str):
                continue
            value = (reported_twin.get("reported") or {}).get("value")
            why = check_reported(props.get(reported_twin["propertyName"]), value) if value is not None else None
            if why is not None:
                refused.append(f"{reported_twin['propertyName']}: {why}")
                reported_twin = {k: v for k, v in reported_twin.items() if k != "reported"}  # noqa: PLW2901
            twins.append(reported_twin)
        patch: dict[str, Any] = {"twins": twins}
        for name in ("state", "lastOnlineTime"):
            if isinstance(status.get(name), str):
                patch[name] = status[name]
        try:
            self.kube.patch_custom_status(kinds.DEVICE, key.namespace or "", key.name, {"status": patch})
        except KubeError as exc:
            if exc.status in TRANSIENT:
                log.warning("status of %s not written yet (%s); the node will send it again", key, exc)
                return None
            return [self.reply(envelope.error(MODULE, exc.status, exc.reason))]
        if refused:
            return [self.reply(envelope.error(MODULE, 422, "refused: " + "; ".join(refused)))]
        return [self.reply(envelope.reply(MODULE, {"ok": True}))]
