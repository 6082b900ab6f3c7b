"""A mapper's report from the DMI in one twin/update (DeviceTwin.on_report), on a real SQLite file: applied at
once when every twin is taken; when one is refused, each twin meets the fate it had as a request of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from schemas.devicebus import Publication
from schemas.resource import ResourceKey

NS, DEV = "default", "thermo-1"
RESULT = f"$hw/events/device/{NS}/{DEV}/twin/update/result"
MODEL = {"metadata": {"name": "thermo", "namespace": NS}, "spec": {"properties": [
    {"name": "temperature", "type": "FLOAT"}, {"name": "setpoint", "type": "INT"},
    {"name": "door", "type": "BOOLEAN"}]}}
DEVICE = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
          "metadata": {"name": DEV, "namespace": NS, "resourceVersion": "1"},
          "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": "edge-1",
                   "properties": [{"name": "setpoint", "desired": {"value": "25"}}]}}


def devicetwin(path: Path, member: bool = True) -> DeviceTwin:
    d = DeviceTwin(TwinStore(path), "edge-1")
    d.on_cloud(ResourceKey(NS, "devicemodel", "thermo"), MODEL)
    if member:
        d.on_cloud(ResourceKey(NS, "device", DEV), DEVICE)
    return d


def report(**values: str) -> bytes:
    return json.dumps({"event_id": "", "timestamp": 1, "twin": {
        p: {"actual": {"value": v}} for p, v in values.items()}}).encode()


def actuals(d: DeviceTwin) -> dict[str, str | None]:
    return {p: t.actual for p, t in d.store.twins(f"{NS}/{DEV}").items()}


def errors(pubs: list[Publication]) -> list[dict[str, Any]]:
    """The error answers, but for the time each was made."""
    return [{k: v for k, v in p.payload.items() if k != "timestamp"} for p in pubs
            if p.payload is not None and "code" in p.payload]


def test_a_good_report_is_one_update_with_one_result(tmp_path: Path) -> None:
    d = devicetwin(tmp_path / "t.db")
    pubs = d.on_report(NS, DEV, report(temperature="23.5", setpoint="25", door="true"))
    results = [p for p in pubs if p.topic == RESULT]
    assert len(results) == 1
    assert results[0].payload is not None
    assert set(results[0].payload["twin"]) == {"temperature", "setpoint", "door"}
    assert actuals(d) == {"temperature": "23.5", "setpoint": "25", "door": "true"}
    assert d.take_refused() == 0


@pytest.mark.parametrize("member", [True, False])
def test_a_bad_twin_is_refused_alone_and_the_others_kept_as_when_sent_one_by_one(tmp_path: Path,
                                                                                 member: bool) -> None:
    values = {"temperature": "23.5", "setpoint": "warm", "door": "true"}  # setpoint is an INT
    together = devicetwin(tmp_path / "together.db", member)
    alone = devicetwin(tmp_path / "alone.db", member)
    pubs = together.on_report(NS, DEV, report(**values))
    one_by_one = [p for prop, value in values.items()
                  for p in alone.on_device(NS, DEV, "twin/update", report(**{prop: value}))]
    assert errors(pubs) == errors(one_by_one)
    assert len(errors(pubs)) == (1 if member else 3)
    assert [p.topic for p in pubs] == [p.topic for p in one_by_one]
    assert actuals(together) == actuals(alone)
    if member:
        assert actuals(together) == {"temperature": "23.5", "door": "true", "setpoint": None}
    assert together.take_refused() == alone.take_refused()


def test_an_unreadable_report_is_answered_as_before(tmp_path: Path) -> None:
    together = devicetwin(tmp_path / "together.db")
    alone = devicetwin(tmp_path / "alone.db")
    for payload in (b"{not json", report(temperature="1"), json.dumps({"twin": {"bad name!": {}}}).encode()):
        assert errors(together.on_report(NS, DEV, payload)) == errors(alone.on_device(NS, DEV, "twin/update",
                                                                                      payload))
