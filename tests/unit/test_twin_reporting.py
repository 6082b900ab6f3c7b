"""reportToCloud, reportCycle and stateReport: what of a device's news DeviceTwin sends to the cloud, and when."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from edge.devicetwin.component import DeviceTwinSettings
from edge.devicetwin.reporting import CloudReports
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from runtime.settings import SettingsError, add_arguments, load
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


def test_report_cycle_lets_one_new_value_up_per_cycle_one_of_them_early(dt: DeviceTwin, clock: Clock) -> None:
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([{"name": "power", "reportCycle": 1000}]))
    read(dt, power="1", volts="230")
    assert reported(status(dt)) == {"power": "1", "volts": "230"}
    clock.now += 0.3
    read(dt, power="2", volts="231")
    assert reported(status(dt)) == {"power": "2", "volts": "231"}  # early, on the credit
    clock.now += 0.3
    read(dt, power="3")
    assert status(dt) is None  # power waits for its cycle, and the status sent last does not go again ...
    assert dt.dirty == {f"{NS}/meter"}  # ... and the device stays pending
    clock.now += 0.5
    assert reported(status(dt)) == {"power": "3", "volts": "231"}  # the latest value, once its turn comes
    assert dt.dirty == set()
    assert status(dt) is None


def test_a_property_changing_flat_out_goes_up_once_per_cycle_and_one_at_the_cycle_loses_none(
        dt: DeviceTwin, clock: Clock) -> None:
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([{"name": "power", "reportCycle": 1000}]))
    sent = []
    for step in range(200):  # every 50 ms for 10 s
        read(dt, power=str(step))
        if found := status(dt):
            sent.append(reported(found)["power"])
        clock.now += 0.05
    assert 10 <= len(sent) <= 12  # the first, one early, then one a cycle
    sent.clear()
    clock.now += 5.0
    for step in range(20):  # a source at the cycle itself, 150 ms early or late in turn
        clock.now += 1.0 + (0.15 if step % 2 else -0.15)
        read(dt, power=f"m{step}")
        if found := status(dt):
            sent.append(reported(found)["power"])
    assert sent == [f"m{step}" for step in range(20)]


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
    assert (status(dt) or {})["state"] == "offline"  # early, on the credit
    dt.on_device(NS, "meter", "state/update", b'{"state":"online"}')
    assert status(dt) is None  # "online" waits for the state's cycle
    clock.now += 0.6
    assert (status(dt) or {})["state"] == "online"


def test_the_default_cycle_paces_what_sets_none_and_a_value_after_a_quiet_cycle_goes_at_once(
        tmp_path: Path, clock: Clock) -> None:
    dt = DeviceTwin(TwinStore(tmp_path / "twin.db"), NODE, reports=CloudReports(clock, default_cycle_ms=1000))
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([{"name": "power"}, {"name": "fast", "reportCycle": 100}]))
    read(dt, power="1", fast="1")
    assert reported(status(dt)) == {"power": "1", "fast": "1"}  # the first values at once
    clock.now += 0.125
    read(dt, power="2", fast="2")
    assert reported(status(dt)) == {"power": "2", "fast": "2"}  # one early
    for step in range(3, 9):  # a device changing every 0.125 s
        clock.now += 0.125
        read(dt, power=str(step), fast=str(step))
        assert reported(status(dt)) == {"power": "2", "fast": str(step)}  # its own cycle beats the default
    clock.now += 0.125
    assert reported(status(dt)) == {"power": "8", "fast": "8"}  # the latest, once the default cycle allows
    assert status(dt) is None
    clock.now += 5.0
    read(dt, power="9")
    assert reported(status(dt)) == {"power": "9", "fast": "8"}  # after a quiet cycle: at once


def test_report_all_sends_every_status_again_the_same_or_not(dt: DeviceTwin) -> None:
    dt.on_cloud(ResourceKey(NS, "device", "meter"), meter([{"name": "power"}]))
    read(dt, power="1")
    first = status(dt)
    dt.dirty.add(f"{NS}/meter")
    assert status(dt) is None  # nothing new
    dt.report_all()  # what went up may have been lost
    assert status(dt) == first


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


def test_the_default_cycle_is_a_setting_and_a_negative_one_is_refused() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, DeviceTwinSettings)

    def cycle(*argv: str) -> int:
        return load(DeviceTwinSettings, parser.parse_args(["--node", NODE, *argv]), environ={}).report_cycle_ms

    assert cycle() == 1000
    assert cycle("--report-cycle-ms", "0") == 0
    with pytest.raises(SettingsError, match="report_cycle_ms must be 0 or more, not -5"):
        cycle("--report-cycle-ms", "-5")
