"""What a mapper reports while the cloud link is down reaches the Device status once the link is back, as one
outbox entry per device holding the last value (issue 18), through the real parts: the DMI's DeviceManager,
DeviceTwin on a SQLite file, EdgeHub's router and outbox on another. No broker: what each component publishes
is handed to the next as its process would, and DeviceTwin's messages are made by DeviceTwinComponent's own
``status_reports``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.devicetwin.component import status_reports
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from edge.dmi.devicemanager import DeviceManager
from edge.edgehub.outbox import Outbox
from edge.edgehub.routing import EdgeRouter
from edge.storage import DiskGuard
from runtime.counters import Counters
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, decode
from schemas.resource import ResourceKey
from tests.support.dmi import NS, dmi_device, dmi_model

NODE = "edge-1"


class Node:
    """The three parts a report crosses on one node, the cloud link down."""

    def __init__(self, tmp: Path) -> None:
        self.manager = DeviceManager(NODE)
        self.manager.replace({ResourceKey(NS, "devicemodel", "thermo"): dmi_model(),
                              ResourceKey(NS, "device", "thermo-1"): dmi_device()})
        self.manager.register(pb.MapperRegisterRequest(mapper=pb.MapperInfo(
            name="modbus-mapper", protocol="modbus", address=b"/run/mappers/modbus.sock")))
        self.twin = DeviceTwin(TwinStore(tmp / "twin.db"), NODE)
        self.twin.on_cloud(ResourceKey(NS, "devicemodel", "thermo"), dmi_model())
        self.twin.on_cloud(ResourceKey(NS, "device", "thermo-1"), dmi_device())
        self.outbox = Outbox(tmp / "outbox.db", 1024 * 1024)
        self.router = EdgeRouter(NODE, self.outbox, DiskGuard(tmp, 0), Counters(), DEFAULT_MAX_SIZE)

    def mapper_reports(self, temperature: str) -> None:
        """One ReportDeviceStatus, then one DeviceTwin report cycle (its take_reports and the envelope it sends)."""
        reading = pb.Twin(propertyName="temperature", reported=pb.TwinProperty(value=temperature))
        request = pb.ReportDeviceStatusRequest(deviceName="thermo-1", deviceNamespace=NS,
                                               reportedDevice=pb.DeviceStatus(twins=[reading]))
        for handed in self.manager.report_status(request):
            self.twin.on_report(handed.namespace, handed.name, handed.payload)
        for packed in status_reports(NODE, self.twin.take_reports(), DEFAULT_MAX_SIZE):
            assert self.router.from_module(decode(packed.payload), 0.0).queued

    def close(self) -> None:
        self.outbox.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.close()


def reported(envelope: Envelope) -> dict[str, str]:
    assert isinstance(envelope.body, dict)
    return {t["propertyName"]: t["reported"]["value"] for t in envelope.body["status"]["twins"] if "reported" in t}


def test_reports_made_offline_leave_one_outbox_entry_with_the_last_value(node: Node) -> None:
    assert not node.router.link_up
    for value in ("20.5", "21.0", "22.5", "23.0"):
        node.mapper_reports(value)
    assert node.router.counters.get("outbox_added") == 4  # each cycle sent its status to EdgeHub...
    (entry,) = node.outbox.after(0, 10)  # ...and each replaced the one before: one entry, the newest
    queued = decode(entry.payload)
    assert queued.res == ResourceKey(NS, "devicestatus", "thermo-1")
    assert reported(queued)["temperature"] == "23.0"  # what EdgeHub's sender sends up when the link is back
