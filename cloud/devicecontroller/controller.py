"""DeviceController: Devices and DeviceModels to the nodes that serve them, and what devices report back.

Down (cloud/nodesync.py): a Device with ``spec.nodeName`` goes to that node with its
DeviceModel; a changed nodeName moves it; a deleted one leaves. Desired values
travel inside the Device object, through CloudHub's reliable delivery. A change
of the status alone (the node's own reports, written back) is not sent down
(edgeview.py).

Up: a device's status (reported values, observedDesired, state, lastOnlineTime)
is checked against its type (the Device's desired.metadata.type, else the
DeviceModel's, as the edge checks it) and the model's range, and merged into
the Device status, or its DeviceStatus object (``--status-object``,
statusobject.py); values that do not fit are refused with the reason. The writes
are made by ``--status-writers`` threads, one per device at a time, a report
arriving while its device's write waits joining that write (coalescer.py); the
node's report is acknowledged once the write carrying it succeeded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud.devicecontroller import statusobject
from cloud.devicecontroller.edgeview import status_only
from cloud.devicecontroller.statusobject import StatusObject
from cloud.devicecontroller.statuswriters import Ack, StatusWriters
from cloud.devicecontroller.warnings import warn_if_refused
from cloud.kube import Kube, KubeError
from cloud.nodesync import ANSWER_QOS_HELP, BATCH_LINGER_HELP, BATCH_LINGER_MS, NodeSync, linger_of
from cloud.packed import Packed
from cloud.placement import Change, Placement, key_of, model_refs
from cloud.replicas.elected import LeaderElectSettings
from cloud.resyncschedule import DEFAULT_PERIOD_S
from runtime import hoptrace
from runtime.bus import Bus
from runtime.component import ComponentSettings
from runtime.qos import check_qos
from schemas import crds, kinds, twin
from schemas.devices import Device, DeviceModel, ModelProperty
from schemas.envelope import Envelope, Op, Send
from schemas.fields import BodyError
from schemas.reports import DeviceStatusReport

log = logging.getLogger(__name__)

MODULE = "devicecontroller"


@dataclass(frozen=True)
class DeviceControllerSettings(ComponentSettings, LeaderElectSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={
        "help": "API server URL to use instead of the kubeconfig's (k3s writes https://127.0.0.1:6443)"})
    install_crds: bool = field(default=True, metadata={"help": "create the devices.kubeedge.io CRDs if missing"})
    query_timeout_s: float = field(default=10.0, metadata={"help": "seconds to wait for a node's store listing"})
    status_object: str = field(default=statusobject.DEFAULT, metadata={"help": statusobject.HELP})
    resync_period_s: float = field(default=DEFAULT_PERIOD_S, metadata={
        "help": "seconds between two resyncs of a connected node besides the one at each session start (finds "
                "what the broker lost); 0: none"})
    status_writers: int = field(default=4, metadata={
        "help": "threads writing reported device status to the API server, one device at a time each; a report "
                "arriving while its device's write waits joins that write"})
    batch_linger_ms: int = field(default=BATCH_LINGER_MS, metadata={"help": BATCH_LINGER_HELP})
    answer_qos: int = field(default=1, metadata={"help": ANSWER_QOS_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        statusobject.check(self.status_object)
        if self.status_writers < 1:
            raise ValueError(f"status_writers must be at least 1, not {self.status_writers}")
        linger_of(self.batch_linger_ms)
        check_qos("answer_qos", self.answer_qos)


def check_reported(prop: ModelProperty | None, value: str, declared: str | None = None) -> str | None:
    """Why ``value`` does not fit the property (None when it does): its type as the edge checks it (the
    Device's desired.metadata.type, else the model's; KubeEdge's reasons), then the model's range."""
    if declared is None and prop is None:
        return None  # a property neither the Device nor the model types: kept as the device reports it
    kind = declared or twin.MODEL_TYPES.get(prop.type if prop else "", "string")
    why = twin.type_error(value, kind)
    if why is not None:
        return f"{value!r}: {why}"
    if prop is None or kind not in ("int", "integer", "float", "double"):
        return None
    number = float(value)
    for bound, limit, sign in (("minimum", prop.minimum, 1), ("maximum", prop.maximum, -1)):
        if not limit:
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
                         (kinds.DEVICEMODEL,), bus, query_timeout_s=settings.query_timeout_s,
                         resync_period_s=settings.resync_period_s, max_size=settings.max_envelope_size,
                         linger_ms=settings.batch_linger_ms, answer_qos=settings.answer_qos)
        self._checked: dict[tuple[str, str], str] = {}  # the reconcile thread's: Devices' spec versions checked
        self.status_writers = StatusWriters(StatusObject(kube, settings.status_object), self.bus.send, self.reply,
                                            settings.status_writers, module=MODULE)

    def start(self) -> None:
        if self.settings.install_crds:
            threading.Thread(target=self._install_crds, name="crds", daemon=True).start()
        self.status_writers.start()
        super().start()

    def close(self) -> None:
        """Stop the writers after the write each is making; what still waits was not acknowledged, so its nodes
        send it again."""
        self.status_writers.close()
        super().close()

    def _install_crds(self) -> None:
        for attempt in range(60):
            try:
                self.kube.ensure_crds(crds.manifests())
                return
            except KubeError as exc:
                log.info("CRDs not installed yet (%s); retrying (%d)", exc, attempt + 1)
                threading.Event().wait(min(5.0, 0.5 * (attempt + 1)))

    def _on_event(self, kind: str, event: str, obj: dict[str, Any], packed: Packed, out: list[Change]) -> None:
        if kind == kinds.DEVICE and event in ("ADDED", "MODIFIED"):
            warn_if_refused(self.kube, obj, self._checked)
            placed = self.placement.pods.get(key_of(kinds.DEVICE, obj))
            if placed is not None and status_only(placed, obj):
                # Placement keeps the version the nodes hold; the informer has this one for status merges.
                self.bus.counters.inc("status_echoes_skipped")
                return
        super()._on_event(kind, event, obj, packed, out)

    def on_edge(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        key = envelope.res
        if key is None or key.kind != kinds.DEVICESTATUS or envelope.op not in (Op.UPDATE, Op.PATCH):
            return [self.reply(envelope.reply(MODULE, {"ignored": True}))]
        found = self.informers[kinds.DEVICE].get(key.namespace, key.name)
        if found is None:
            return [self.reply(envelope.error(MODULE, 404, f"Device {key.namespace}/{key.name} does not exist"))]
        device = Device.view(found)
        if device.node_name != envelope.node:
            return [self.reply(envelope.error(MODULE, 403, f"Device {key.namespace}/{key.name} is not bound to "
                                                           f"{envelope.node}"))]
        try:
            report = DeviceStatusReport.parse(envelope.body)
        except BodyError as exc:
            return [self.reply(envelope.error(MODULE, 400, str(exc)))]
        model = self.informers[kinds.DEVICEMODEL].get(key.namespace, device.model) if device.model else None
        props = DeviceModel.view(model).properties if model is not None else {}
        declared = {p.name: p.desired_type for p in device.properties if p.desired_type}
        twins, refused = [], []
        for reported in report.twins:
            name = reported.property_name
            why = None if reported.reported is None else check_reported(props.get(name), reported.reported,
                                                                          declared.get(name))
            if why is not None:
                refused.append(f"{reported.property_name}: {why}")
            twins.append(reported.entry if why is None else reported.without_reported())
        patch: dict[str, Any] = {"twins": twins}
        if report.state is not None:
            patch["state"] = report.state
        if report.last_online_time is not None:
            patch["lastOnlineTime"] = report.last_online_time
        answer = (envelope.error(MODULE, 422, "refused: " + "; ".join(refused)) if refused
                  else envelope.reply(MODULE, {"ok": True}))
        # No answer now: the node's report is acknowledged (and leaves its outbox) once the write carrying it is
        # in the API server (statuswriters.py); until then the node may send it again, which joins the same write.
        hoptrace.hop("dc_received", str(key))
        if self.status_writers.put(key.namespace or "", key.name, found, patch, Ack(envelope, answer)):
            self.bus.counters.inc("status_writes_coalesced")
        return None
