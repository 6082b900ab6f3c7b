"""DeviceManagerService's logic without a socket: store changes in, mapper calls out; requests in, answers or
refusals out (edge/dmi/devicemanager.py)."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from edge.dmi.devicemanager import DeviceManager, MapperCall, Refused
from edge.dmi.settings import DmiSettings
from schemas import twin
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.resource import ResourceKey
from tests.support.dmi import dmi_device, dmi_model

SOCKET = b"/run/mappers/modbus.sock"


def key(kind: str, name: str) -> ResourceKey:
    return ResourceKey("default", kind, name)


def listed(*objects: dict[str, Any]) -> dict[ResourceKey, dict[str, Any]]:
    return {key(o["kind"].lower(), o["metadata"]["name"]): o for o in objects}


def registration(protocol: str = "modbus", address: bytes = SOCKET, with_data: bool = True
                 ) -> pb.MapperRegisterRequest:
    return pb.MapperRegisterRequest(withData=with_data, mapper=pb.MapperInfo(
        name=f"{protocol}-mapper", protocol=protocol, address=address, version="1", api_version="v1beta1"))


@pytest.fixture
def manager() -> DeviceManager:
    m = DeviceManager("edge-1")
    assert m.replace(listed(dmi_model(), dmi_model("cam", "onvif"), dmi_device(),
                            dmi_device("thermo-2"), dmi_device("cam-1", protocol="onvif", model="cam"))) == []
    return m


def methods(calls: list[MapperCall]) -> list[tuple[str, str]]:
    return [(c.protocol, c.method) for c in calls]


def test_registration_answers_the_devices_of_the_mappers_protocol_with_their_model(manager: DeviceManager) -> None:
    mapper, answer = manager.register(registration())
    assert mapper.address == SOCKET.decode()
    assert manager.mappers["modbus"] == mapper
    assert [(d.namespace, d.name) for d in answer.deviceList] == [("default", "thermo-1"), ("default", "thermo-2")]
    assert [m.name for m in answer.modelList] == ["thermo"]  # once, however many devices use it
    _, bare = manager.register(registration(with_data=False))
    assert not bare.deviceList
    assert not bare.modelList


@pytest.mark.parametrize(("request_", "reason"), [
    (pb.MapperRegisterRequest(withData=True), "mapper is missing"),
    (registration(protocol=""), "no protocol"),
    (registration(address=b"relative.sock"), "absolute path"),
    (registration(address=b"/" + b"x" * 200), "absolute path"),
    (registration(address=b"\xff"), "UTF-8"),
])
def test_a_bad_registration_is_refused_and_registers_nothing(manager: DeviceManager, request_: pb.MapperRegisterRequest,
                                                             reason: str) -> None:
    with pytest.raises(Refused, match=reason) as refused:
        manager.register(request_)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert manager.mappers == {}


def test_a_mappers_twins_become_devicetwin_requests(manager: DeviceManager) -> None:
    manager.register(registration())
    twins_ = [pb.Twin(propertyName="temperature", reported=pb.TwinProperty(value="23.5")),
              pb.Twin(propertyName="setpoint", reported=pb.TwinProperty(value="25"),
                      observedDesired=pb.TwinProperty(value="25"))]
    report = pb.ReportDeviceStatusRequest(deviceName="thermo-1", deviceNamespace="default",
                                          reportedDevice=pb.DeviceStatus(twins=twins_))
    (request,) = manager.report_status(report)  # one request per report, not one per twin
    assert (request.namespace, request.name, request.request) == ("default", "thermo-1", "twin/update")
    assert json.loads(request.payload)["twin"] == {"temperature": {"actual": {"value": "23.5"}},
                                                   "setpoint": {"actual": {"value": "25"}}}
    state = manager.report_states(pb.ReportDeviceStatesRequest(deviceName="thermo-1", deviceNamespace="default",
                                                               state="online"))
    assert state.request == "state/update"
    assert json.loads(state.payload)["state"] == "online"


def twins(*values: str, prop: str = "temperature") -> pb.DeviceStatus:
    return pb.DeviceStatus(twins=[pb.Twin(propertyName=prop, reported=pb.TwinProperty(value=v)) for v in values])


def test_a_report_is_split_only_under_devicetwins_size_limit_or_for_a_property_named_twice(
        manager: DeviceManager) -> None:
    manager.register(registration())
    big = pb.DeviceStatus(twins=[pb.Twin(propertyName=f"p{i}", reported=pb.TwinProperty(value="9" * 100))
                                 for i in range(900)])
    requests = manager.report_status(pb.ReportDeviceStatusRequest(deviceName="thermo-1", reportedDevice=big))
    assert 1 < len(requests) < 10
    assert all(len(r.payload) <= twin.MAX_JSON_BYTES for r in requests)
    assert [p for r in requests for p in json.loads(r.payload)["twin"]] == [f"p{i}" for i in range(900)]
    twice = manager.report_status(pb.ReportDeviceStatusRequest(deviceName="thermo-1",
                                                               reportedDevice=twins("1", "2", "3")))
    assert [json.loads(r.payload)["twin"]["temperature"]["actual"]["value"] for r in twice] == ["1", "2", "3"]


@pytest.mark.parametrize(("name", "status", "code", "reason"), [
    ("thermo-9", twins("1"), grpc.StatusCode.NOT_FOUND, "not a member of node edge-1"),
    ("cam-1", twins("1"), grpc.StatusCode.FAILED_PRECONDITION, "no mapper of that protocol"),
    ("Bad_Name", twins("1"), grpc.StatusCode.INVALID_ARGUMENT, "namespace and name"),
    ("thermo-1", pb.DeviceStatus(), grpc.StatusCode.INVALID_ARGUMENT, "has no twins"),
    ("thermo-1", pb.DeviceStatus(twins=[pb.Twin(propertyName="temperature")]), grpc.StatusCode.INVALID_ARGUMENT,
     "no reported value"),
    ("thermo-1", twins("two words"), grpc.StatusCode.INVALID_ARGUMENT, "twins"),
    ("thermo-1", twins("1", prop="white space"), grpc.StatusCode.INVALID_ARGUMENT, "twins"),
    ("thermo-1", twins(*["1"] * 1001), grpc.StatusCode.INVALID_ARGUMENT, "at most 1000"),
])
def test_a_bad_report_is_refused_with_its_reason(manager: DeviceManager, name: str, status: pb.DeviceStatus,
                                                code: grpc.StatusCode, reason: str) -> None:
    manager.register(registration())
    with pytest.raises(Refused, match=reason) as refused:
        manager.report_status(pb.ReportDeviceStatusRequest(deviceName=name, deviceNamespace="default",
                                                           reportedDevice=status))
    assert refused.value.code == code


def test_a_bad_state_is_refused(manager: DeviceManager) -> None:
    manager.register(registration())
    with pytest.raises(Refused) as refused:
        manager.report_states(pb.ReportDeviceStatesRequest(deviceName="thermo-1", state="exploded"))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_store_changes_become_calls_on_the_registered_mapper_only(manager: DeviceManager) -> None:
    assert manager.on_change("device", "default/thermo-3", dmi_device("thermo-3")) == []  # no mapper yet
    manager.register(registration())
    new = manager.on_change("device", "default/thermo-4", dmi_device("thermo-4"))
    assert methods(new) == [("modbus", "RegisterDevice")]
    request = new[0].request
    assert isinstance(request, pb.RegisterDeviceRequest)
    assert request.device.name == "thermo-4"
    status_only = {**dmi_device("thermo-4"), "status": {"twins": []}}
    assert manager.on_change("device", "default/thermo-4", status_only) == []
    assert methods(manager.on_change("device", "default/thermo-4", dmi_device("thermo-4", setpoint="30"))) == [
        ("modbus", "UpdateDevice")]
    assert methods(manager.on_change("device", "default/thermo-4", dmi_device("thermo-4", protocol="onvif"))) == [
        ("modbus", "RemoveDevice")]  # and RegisterDevice on the onvif mapper, had one registered
    assert methods(manager.on_change("device", "default/thermo-1", None)) == [("modbus", "RemoveDevice")]
    assert manager.on_change("devicemodel", "default/thermo", dmi_model()) == []  # unchanged
    changed = dmi_model()
    changed["spec"]["properties"][0]["unit"] = "K"
    assert methods(manager.on_change("devicemodel", "default/thermo", changed)) == [("modbus", "UpdateDeviceModel")]
    created = manager.on_change("devicemodel", "default/new", dmi_model("new"))
    assert methods(created) == [("modbus", "CreateDeviceModel")]
    assert methods(manager.on_change("devicemodel", "default/new", None)) == [("modbus", "RemoveDeviceModel")]
    assert manager.on_change("devicemodel", "default/cam", None) == []  # onvif: no mapper


def report_of(name: str) -> pb.ReportDeviceStatusRequest:
    return pb.ReportDeviceStatusRequest(deviceName=name, deviceNamespace="default", reportedDevice=twins("1"))


def test_a_device_bound_to_another_node_is_not_served_and_its_reports_say_where_it_is() -> None:
    """The cloud sends a node only its own Devices, and deletes one that moves: a Device of another node in
    this node's store is a stale or wrong copy. Like DeviceTwin, the DMI takes it as absent."""
    manager = DeviceManager("edge-1")
    manager.replace(listed(dmi_model(), dmi_device(), dmi_device("thermo-9", node="edge-2")))
    _mapper, answer = manager.register(registration())
    assert [d.name for d in answer.deviceList] == ["thermo-1"]
    with pytest.raises(Refused, match="device default/thermo-9 is bound to node edge-2, not a member of node edge-1"
                       ) as refused:
        manager.report_status(report_of("thermo-9"))
    assert refused.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(Refused, match="bound to node edge-2") as refused:
        manager.report_states(pb.ReportDeviceStatesRequest(deviceName="thermo-9", state="online"))
    assert refused.value.code == grpc.StatusCode.NOT_FOUND

    # a served device whose copy here names another node: its mapper lets it go, and its reports are refused
    assert methods(manager.on_change("device", "default/thermo-1", dmi_device(node="edge-2"))) == [
        ("modbus", "RemoveDevice")]
    with pytest.raises(Refused, match="default/thermo-1 is bound to node edge-2"):
        manager.report_status(report_of("thermo-1"))
    # bound to this node again: registered with its mapper, and served
    assert methods(manager.on_change("device", "default/thermo-1", dmi_device())) == [("modbus", "RegisterDevice")]
    assert len(manager.report_status(report_of("thermo-1"))) == 1
    # gone from the store: an unknown device, no longer said to be elsewhere
    manager.replace(listed(dmi_model(), dmi_device()))
    with pytest.raises(Refused, match="thermo-9 is not a member of node edge-1"):
        manager.report_status(report_of("thermo-9"))
    assert manager.elsewhere == {}


def test_a_later_list_tells_the_mapper_what_changed_meanwhile(manager: DeviceManager) -> None:
    manager.register(registration())
    calls = manager.replace(listed(dmi_model(), dmi_device(setpoint="40")))
    assert sorted(methods(calls)) == [("modbus", "RemoveDevice"), ("modbus", "UpdateDevice")]
    assert set(manager.devices) == {"default/thermo-1"}


def unpackable(device: dict[str, Any]) -> dict[str, Any]:
    """``device`` with a configData value no mapper can be given (a map inside configData)."""
    device["spec"]["protocol"]["configData"]["table"] = {"nested": 1}
    return device


def test_a_refused_new_version_leaves_the_last_accepted_one_in_the_answer(manager: DeviceManager) -> None:
    manager.on_change("device", "default/thermo-2", unpackable(dmi_device("thermo-2", setpoint="40")))
    _, answer = manager.register(registration())
    assert [(d.name, d.spec.properties[0].desired.value) for d in answer.deviceList] == [
        ("thermo-1", "25"), ("thermo-2", "25")]  # thermo-2 as it was before the refused version
    assert manager.refusals[("device", "default/thermo-2")].reason.startswith("spec.protocol.configData.table")


def test_a_refused_new_device_is_not_served_and_its_reports_say_why(manager: DeviceManager) -> None:
    manager.register(registration())
    assert manager.on_change("device", "default/thermo-9", unpackable(dmi_device("thermo-9"))) == []
    _, answer = manager.register(registration())
    assert "thermo-9" not in [d.name for d in answer.deviceList]
    with pytest.raises(Refused, match="was refused") as refused:
        manager.report_status(pb.ReportDeviceStatusRequest(deviceName="thermo-9", reportedDevice=twins("1")))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    # fixed: it is new to the mapper, so it is registered (not updated)
    assert methods(manager.on_change("device", "default/thermo-9", dmi_device("thermo-9"))) == [
        ("modbus", "RegisterDevice")]
    assert manager.refusals == {}


def test_a_refused_version_changes_nothing_and_is_refused_once(manager: DeviceManager,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    manager.count = counted.append
    manager.register(registration())
    good = manager.devices["default/thermo-1"]
    moved = unpackable(dmi_device(protocol="onvif", setpoint="40"))  # to another protocol, and bad
    assert manager.on_change("device", "default/thermo-1", moved) == []  # no RemoveDevice: it stays where it runs
    assert manager.devices["default/thermo-1"] is good
    with_status = {**moved, "status": {"twins": [{"propertyName": "setpoint"}]}}
    assert manager.on_change("device", "default/thermo-1", with_status) == []  # the same spec, a new status
    assert counted == ["devices_refused"]
    assert len([r for r in caplog.records if "refused this version" in r.getMessage()]) == 1
    assert manager.report_status(pb.ReportDeviceStatusRequest(deviceName="thermo-1", reportedDevice=twins("1")))
    # a later list brings the same refused version: still nothing; then a good one is sent as an update
    assert manager.replace(listed(dmi_model(), dmi_model("cam", "onvif"), with_status, dmi_device("thermo-2"),
                                  dmi_device("cam-1", protocol="onvif", model="cam"))) == []
    assert methods(manager.on_change("device", "default/thermo-1", dmi_device(setpoint="41"))) == [
        ("modbus", "UpdateDevice")]
    assert manager.refusals == {}


def test_a_version_the_mapper_refuses_is_undone_at_the_dmi(manager: DeviceManager) -> None:
    manager.register(registration())
    good = manager.devices["default/thermo-1"]
    (update,) = manager.on_change("device", "default/thermo-1", dmi_device(setpoint="99"))
    assert manager.mapper_refused(update, "setpoint: out of range") == []
    assert manager.devices["default/thermo-1"] is good
    assert "out of range" in manager.refusals[("device", "default/thermo-1")].reason
    _, answer = manager.register(registration())
    assert answer.deviceList[0].spec.properties[0].desired.value == "25"
    assert manager.on_change("device", "default/thermo-1", dmi_device(setpoint="99")) == []  # not sent again
    # a refusal overtaken by a newer version changes nothing
    (newer,) = manager.on_change("device", "default/thermo-1", dmi_device(setpoint="30"))
    assert manager.mapper_refused(update, "late") == []
    assert manager.devices["default/thermo-1"]["spec"] == dmi_device(setpoint="30")["spec"]
    assert newer.method == "UpdateDevice"
    # a new device the mapper refuses is not kept
    (register,) = manager.on_change("device", "default/thermo-5", dmi_device("thermo-5"))
    manager.mapper_refused(register, "bad")
    assert "default/thermo-5" not in manager.devices


def test_a_refused_model_keeps_the_last_accepted_one(manager: DeviceManager) -> None:
    manager.register(registration())
    bad = dmi_model()
    bad["spec"]["properties"][0]["type"] = {"not": "a type"}
    assert manager.on_change("devicemodel", "default/thermo", bad) == []
    assert manager.models["default/thermo"] == dmi_model()
    _, answer = manager.register(registration())
    assert [m.name for m in answer.modelList] == ["thermo"]
    assert ("devicemodel", "default/thermo") in manager.refusals


def test_a_forward_that_overtakes_the_list_is_kept() -> None:
    m = DeviceManager("edge-1")
    m.listing()
    m.on_change("device", "default/thermo-2", dmi_device("thermo-2"))  # stored after MetaManager made its list
    m.replace(listed(dmi_model(), dmi_device()))
    assert set(m.devices) == {"default/thermo-1", "default/thermo-2"}
    m.listing()
    m.on_change("device", "default/thermo-1", None)  # deleted after the list was made
    m.replace(listed(dmi_model(), dmi_device(), dmi_device("thermo-2")))
    assert set(m.devices) == {"default/thermo-2"}


def test_the_dmi_socket_setting_must_fit_a_unix_socket() -> None:
    assert DmiSettings().socket == "/etc/kubeedge/dmi.sock"  # KubeEdge's default, which mappers dial
    for bad in ("relative/dmi.sock", "/" + "d" * 120):
        with pytest.raises(ValueError, match="absolute path"):
            DmiSettings(socket=bad)


def test_a_move_to_another_protocol_refused_by_its_mapper_goes_back_to_the_first(manager: DeviceManager) -> None:
    manager.register(registration())
    manager.register(registration("onvif", b"/run/mappers/onvif.sock"))
    removed, registered = manager.on_change("device", "default/thermo-1", dmi_device(protocol="onvif"))
    assert (removed.protocol, removed.method, registered.protocol, registered.method) == (
        "modbus", "RemoveDevice", "onvif", "RegisterDevice")
    (back,) = manager.mapper_refused(registered, "no such camera")
    assert (back.protocol, back.method) == ("modbus", "RegisterDevice")
    assert isinstance(back.request, pb.RegisterDeviceRequest)
    assert back.request.device.name == "thermo-1"
    assert manager.devices["default/thermo-1"]["spec"]["protocol"]["protocolName"] == "modbus"


def restarted(before: DeviceManager, *store: dict[str, Any]) -> DeviceManager:
    """A new DMI process: what ``before`` kept on disk (as JSON, the way it is written), then the store's list."""
    after = DeviceManager("edge-1")
    assert after.restore(json.loads(json.dumps(before.kept()))) == len(before.refusals)
    assert after.replace(listed(*store)) == []
    return after


def test_a_restart_keeps_the_last_good_version_of_what_the_mapper_refused(manager: DeviceManager) -> None:
    manager.register(registration())
    (update,) = manager.on_change("device", "default/thermo-1", dmi_device(setpoint="99"))
    manager.mapper_refused(update, "setpoint: out of range")
    counted: list[str] = []
    # the node's store holds only the refused version
    after = restarted(manager, dmi_model(), dmi_model("cam", "onvif"), dmi_device(setpoint="99"),
                      dmi_device("thermo-2"), dmi_device("cam-1", protocol="onvif", model="cam"))
    after.count = counted.append
    _, answer = after.register(registration())
    assert {d.name: d.spec.properties[0].desired.value for d in answer.deviceList} == {
        "thermo-1": "25", "thermo-2": "25"}  # the last good version, not the refused one
    assert "out of range" in after.refusals[("device", "default/thermo-1")].reason
    assert after.on_change("device", "default/thermo-1", dmi_device(setpoint="99")) == []  # not sent again
    assert counted == []  # nor refused (counted, logged) again
    assert methods(after.on_change("device", "default/thermo-1", dmi_device(setpoint="30"))) == [
        ("modbus", "UpdateDevice")]
    assert after.refusals == {}


def test_a_restart_keeps_a_refused_model_and_a_refused_new_device_unserved(manager: DeviceManager) -> None:
    bad_model = dmi_model()
    bad_model["spec"]["properties"][0]["type"] = {"not": "a type"}
    manager.on_change("devicemodel", "default/thermo", bad_model)
    manager.on_change("device", "default/thermo-9", unpackable(dmi_device("thermo-9")))
    after = restarted(manager, bad_model, dmi_model("cam", "onvif"), dmi_device(), dmi_device("thermo-2"),
                      dmi_device("cam-1", protocol="onvif", model="cam"), unpackable(dmi_device("thermo-9")))
    assert after.models["default/thermo"] == dmi_model()
    assert "default/thermo-9" not in after.devices
    assert set(after.refusals) == {("devicemodel", "default/thermo"), ("device", "default/thermo-9")}


def test_what_changed_or_went_while_the_dmi_was_down_is_taken_from_the_list(manager: DeviceManager) -> None:
    manager.register(registration())
    (update,) = manager.on_change("device", "default/thermo-1", dmi_device(setpoint="99"))
    manager.mapper_refused(update, "out of range")
    manager.on_change("device", "default/thermo-2", unpackable(dmi_device("thermo-2", setpoint="40")))
    assert len(manager.refusals) == 2
    # meanwhile thermo-1 was fixed and thermo-2 deleted
    after = restarted(manager, dmi_model(), dmi_model("cam", "onvif"), dmi_device(setpoint="30"),
                      dmi_device("cam-1", protocol="onvif", model="cam"))
    assert after.devices["default/thermo-1"]["spec"] == dmi_device(setpoint="30")["spec"]
    assert "default/thermo-2" not in after.devices
    assert after.refusals == {}


@pytest.mark.parametrize("saved", [None, "x", [1], [{"kind": "pod", "ident": "default/a", "reason": "r"}],
                                   [{"kind": "device", "ident": "no-slash", "reason": "r"}],
                                   [{"kind": "device", "ident": "default/a", "reason": 3}],
                                   [{"kind": "device", "ident": "default/a", "reason": "r", "kept": "x"}]])
def test_a_kept_file_that_is_not_one_is_skipped(saved: Any) -> None:
    m = DeviceManager("edge-1")
    assert m.restore(saved) == 0
    assert m.refusals == {}
    assert m.devices == {}
