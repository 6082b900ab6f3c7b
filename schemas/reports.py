"""What edge nodes report up: node registration and status (EdgeD), pod status (EdgeD), device status (DeviceTwin).

EdgeController and DeviceController write these into the API server. Each is parsed once, where it
enters the controller, and refused there with the field named (BodyError) when a field has a shape
the controller or the API server could not take; the parsed report keeps the maps as the node sent
them, since they are written as they are (the API server's own types, which a merge patch replaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.fields import LENIENT, STRICT, Reader
from schemas.kubeobj import ObjectMeta

NODE_STATUS_FIELDS = ("capacity", "allocatable", "addresses", "nodeInfo")
"""What a node's status patch takes from its report, besides the conditions."""


def _conditions(value: Any, where: str) -> list[dict[str, Any]]:
    """A list of conditions, each with its type and status (the API server's required fields)."""
    found = STRICT.mappings(value, where)
    for index, condition in enumerate(found):
        STRICT.required_text(condition.get("type"), f"{where}[{index}].type")
        STRICT.required_text(condition.get("status"), f"{where}[{index}].status")
    return found


# -- nodes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStatus:
    """A Node's ``status`` as its node reports it, at registration, on a change and every ``node_status_report_s``
    (edge/edged/nodereport.py)."""

    conditions: list[dict[str, Any]]
    fields: dict[str, Any]
    """The NODE_STATUS_FIELDS the report carries, as sent: capacity and allocatable map resource names to
    quantities, addresses is a list of {type, address}, nodeInfo maps names to strings."""

    @classmethod
    def parse(cls, value: Any, where: str = "body.status") -> NodeStatus:
        status = STRICT.body(value, where)
        STRICT.text_map(status.get("capacity"), f"{where}.capacity")
        STRICT.text_map(status.get("allocatable"), f"{where}.allocatable")
        for index, address in enumerate(STRICT.mappings(status.get("addresses"), f"{where}.addresses")):
            for name in ("type", "address"):
                STRICT.required_text(address.get(name), f"{where}.addresses[{index}].{name}")
        STRICT.text_map(status.get("nodeInfo"), f"{where}.nodeInfo")
        return cls(_conditions(status.get("conditions"), f"{where}.conditions"),
                   {k: status[k] for k in NODE_STATUS_FIELDS if k in status})

    @classmethod
    def parse_report(cls, body: Any) -> NodeStatus:
        """The body of a ``nodestatus`` update: ``{"status": {...}}``."""
        return cls.parse(STRICT.body(body).get("status"), "body.status")


@dataclass(frozen=True)
class LeaseHeartbeat:
    """The body of a ``lease`` update: the node is alive now. EdgeD adds its conditions as it sees them (without
    heartbeat times), so that a Node whose conditions someone else changed (the node lifecycle controller's
    Unknown while EdgeController was away) is put right at the next heartbeat, not at the next status report,
    minutes later: kubelet compares its status with the API's Node each pass. Any other field (KubeEdge's edge
    sends a Lease object) is left alone: the renewal is all it asks for."""

    conditions: list[dict[str, Any]] | None

    @classmethod
    def parse(cls, body: Any) -> LeaseHeartbeat:
        found = STRICT.body(body) if body is not None else {}
        conditions = found.get("conditions")
        return cls(None if conditions is None else _conditions(conditions, "body.conditions"))


@dataclass(frozen=True)
class NodeRegistration:
    """The body of a ``node`` insert: the Node as its node describes itself."""

    name: str | None
    """``metadata.name``, if given: a node may only register itself."""
    labels: dict[str, str]
    status: NodeStatus | None

    @classmethod
    def parse(cls, body: Any) -> NodeRegistration:
        found = STRICT.body(body)
        metadata = ObjectMeta.parse(found.get("metadata"))
        status = found.get("status")
        return cls(metadata.name, dict(metadata.labels), None if status is None else NodeStatus.parse(status,
                                                                                                         "body.status"))


# -- pods ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodStatusReport:
    """The body of a ``podstatus`` update: which pod (its UID tells one incarnation from the next), how it is."""

    name: str | None
    namespace: str | None
    uid: str | None
    status: dict[str, Any]
    """The pod's status as the node reports it: the whole truth, written as a merge patch."""

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return LENIENT.mappings(self.status.get("conditions"), "status.conditions")

    @property
    def all_stopped(self) -> bool:
        """Every container has terminated (a pod being deleted may then go at once)."""
        containers = LENIENT.mappings(self.status.get("containerStatuses"), "status.containerStatuses")
        return all("terminated" in LENIENT.mapping(c.get("state"), "state") for c in containers)

    @classmethod
    def parse(cls, body: Any) -> PodStatusReport:
        found = STRICT.body(body)
        metadata = ObjectMeta.parse(found.get("metadata"))
        status = STRICT.body(found.get("status"), "body.status")
        _conditions(status.get("conditions"), "body.status.conditions")
        for name in ("phase", "podIP", "hostIP", "reason", "message"):
            STRICT.text(status.get(name), f"body.status.{name}")
        STRICT.mappings(status.get("podIPs"), "body.status.podIPs")
        where = "body.status.containerStatuses"
        for index, container in enumerate(STRICT.mappings(status.get("containerStatuses"), where)):
            STRICT.text(container.get("name"), f"{where}[{index}].name")
            STRICT.mapping(container.get("state"), f"{where}[{index}].state")
            STRICT.mapping(container.get("lastState"), f"{where}[{index}].lastState")
        return cls(metadata.name, metadata.namespace, metadata.uid, status)

    def to_body(self) -> dict[str, Any]:
        return {"metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid}, "status": self.status}


# -- devices -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportedTwin:
    """One property in a Device's ``status.twins``: the value the device reported, the desired one it confirmed."""

    property_name: str
    reported: str | None
    """``reported.value``: None when the device has reported nothing for it yet."""
    reported_metadata: dict[str, str]
    entry: dict[str, Any]
    """The entry as sent (``reported``, ``observedDesired``), written into the Device's status as it is."""

    def without_reported(self) -> dict[str, Any]:
        """The entry with the reported value left out (a value the model refuses)."""
        return {k: v for k, v in self.entry.items() if k != "reported"}

    @classmethod
    def read(cls, entry: dict[str, Any], reader: Reader, where: str) -> ReportedTwin:
        reported = reader.mapping(entry.get("reported"), f"{where}.reported")
        for part in ("reported", "observedDesired"):
            value = reader.mapping(entry.get(part), f"{where}.{part}")
            reader.text(value.get("value"), f"{where}.{part}.value")
            reader.text_map(value.get("metadata"), f"{where}.{part}.metadata")
        return cls(reader.required_text(entry.get("propertyName"), f"{where}.propertyName"),
                   reader.text(reported.get("value"), f"{where}.reported.value"),
                   reader.text_map(reported.get("metadata"), f"{where}.reported.metadata"), entry)


@dataclass(frozen=True)
class DeviceStatusReport:
    """A Device's ``status`` as DeviceTwin reports it (and as the API server then holds it)."""

    state: str | None
    last_online_time: str | None
    twins: list[ReportedTwin]

    @classmethod
    def read(cls, value: Any, reader: Reader, where: str = "body.status") -> DeviceStatusReport:
        status = reader.body(value, where)
        twins = [ReportedTwin.read(entry, reader, f"{where}.twins[{index}]")
                 for index, entry in enumerate(reader.mappings(status.get("twins"), f"{where}.twins"))]
        return cls(reader.text(status.get("state"), f"{where}.state"),
                   reader.text(status.get("lastOnlineTime"), f"{where}.lastOnlineTime"), twins)

    @classmethod
    def parse(cls, body: Any) -> DeviceStatusReport:
        """The body of a ``devicestatus`` update: ``{"status": {...}}``."""
        return cls.read(STRICT.body(body).get("status"), STRICT)

    @classmethod
    def view(cls, device: Any) -> DeviceStatusReport:
        """The status of a Device the API server holds (never raises)."""
        return cls.read(LENIENT.mapping(device, "").get("status") or {}, LENIENT, "status")
