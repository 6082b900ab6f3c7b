"""reportToCloud, reportCycle and stateReport: what of a device's news DeviceTwin sends to the cloud, and when."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.devicetwin.reporting import CloudReports
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from schemas.devices import Device, Reporting
from schemas.fields import BodyError
from schemas.resource import ResourceKey

NS, NODE = "default", "edge-1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def meter(props: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": "meter", "namespace": NS, "resourceVersion": "3"},
            "spec": {"nodeName": NODE, "properties": props, **spec}}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dt(tmp_path: Path, clock: Clock) -> DeviceTwin:
    return DeviceTwin(TwinStore(tmp_path / "twin.db"), NODE, reports=CloudReports(clock))


def read(dt: DeviceTwin, **values: str) -> None:
    body = {"event_id": "r", "twin": {k: {"actual": {"value": v}} for k, v in values.items()}}
    (result, *_rest) = dt.on_device(NS, "meter", "twin/update", json.dumps(body).encode())
    assert result.payload is not None
    assert "code" not in result.payload, result.payload


def status(dt: DeviceTwin) -> dict[str, Any] | None:
    """The one status DeviceTwin sends now (None: nothing)."""
    reports = dt.take_reports()
    assert len(reports) <= 1
    return reports[0][1] if reports else None


def reported(found: dict[str, Any] | None) -> dict[str, str]:
    assert found is not None
    return {t["propertyName"]: t["reported"]["value"] for t in found["twins"] if "reported" in t}


def test_report_to_cloud_false_stays_at_the_edge(dt: DeviceTwin) -> None:
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([{"name": "secret", "reportToCloud": False},
                                                            {"name": "power", "reportToCloud": True},
                                                            {"name": "volts"}]))
    read(dt, secret="42", power="7", volts="230")
    assert reported(status(dt)) == {"power": "7", "volts": "230"}
    (got,) = dt.on_device(NS, "meter", "twin/get", b'{"event_id":"g"}')
    assert got.payload is not None
    assert got.payload["twin"]["secret"]["actual"]["value"] == "42"  # devices still read it


def test_report_cycle_lets_one_new_value_up_per_cycle(dt: DeviceTwin, clock: Clock) -> None:
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([{"name": "power", "reportCycle": 1000}]))
    read(dt, power="1", volts="230")
    assert reported(status(dt)) == {"power": "1", "volts": "230"}
    clock.now += 0.3
    read(dt, power="2", volts="231")
    assert reported(status(dt)) == {"power": "1", "volts": "231"}  # power waits for its cycle ...
    assert dt.dirty == {f"{NS}/meter"}  # ... and the device stays pending
    clock.now += 0.3
    read(dt, power="3")
    assert reported(status(dt)) == {"power": "1", "volts": "231"}
    clock.now += 0.5
    assert reported(status(dt)) == {"power": "3", "volts": "231"}  # the latest value, once the cycle ends
    assert dt.dirty == set()
    assert status(dt) is None


def test_state_report(dt: DeviceTwin, clock: Clock) -> None:
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([], stateReport={"reportCycle": 500}))
    dt.on_device(NS, "meter", "state/update", b'{"state":"online"}')
    found = status(dt)
    assert found is not None
    assert "state" not in found  # a stateReport without reportToCloud: true keeps the state at the edge
    assert "lastOnlineTime" not in found
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([], stateReport={"reportToCloud": True,
                                                                           "reportCycle": 500}))
    assert (status(dt) or {})["state"] == "online"  # the changed policy sends the status again
    dt.on_device(NS, "meter", "state/update", b'{"state":"offline"}')
    assert (status(dt) or {})["state"] == "online"
    clock.now += 0.6
    assert (status(dt) or {})["state"] == "offline"


def test_reporting_fields_are_read_or_refused() -> None:
    device = Device.parse(meter([{"name": "p", "reportToCloud": False, "reportCycle": 250}]))
    assert device.properties[0].report == Reporting(False, 250)
    assert device.state_report == Reporting(True, 0)  # no stateReport: every state goes up, as before
    old = Device.parse({**meter([]), "status": {"reportToCloud": True, "reportCycle": 9}})
    assert old.state_report == Reporting(True, 9)  # before KubeEdge 1.23, in the status
    cases: list[tuple[dict[str, Any], str]] = [({"name": "p", "reportCycle": -1}, "properties[0].reportCycle"),
                                               ({"name": "p", "reportToCloud": "yes"}, "properties[0].reportToCloud")]
    for bad, where in cases:
        with pytest.raises(BodyError, match=where.replace("[", r"\[").replace("]", r"\]")):
            Device.parse(meter([bad]))
    with pytest.raises(BodyError, match="stateReport"):
        Device.parse(meter([], stateReport=[]))
