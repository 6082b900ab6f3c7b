"""Stored Device and DeviceModel objects as KubeEdge's DMI messages (edge/dmi/convert.py)."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from edge.dmi.convert import Unconvertible, device_message, model_message, overridden
from schemas.dmi.values import NotAWrapper, pack, unpack
from tests.support.dmi import dmi_device, dmi_model


def test_config_values_are_packed_as_kubeedge_packs_them() -> None:
    # Go reads every JSON number as float64, which KubeEdge packs as FloatValue; mappers expect that.
    assert pack(2).Is(wrappers_pb2.FloatValue.DESCRIPTOR)
    assert pack(0.5).Is(wrappers_pb2.FloatValue.DESCRIPTOR)
    assert pack(True).Is(wrappers_pb2.BoolValue.DESCRIPTOR)
    assert pack("HoldingRegister").Is(wrappers_pb2.StringValue.DESCRIPTOR)
    assert [unpack(pack(v)) for v in (2, "x", False)] == [2.0, "x", False]
    with pytest.raises(NotAWrapper, match="dict"):
        pack({"nested": 1})


def test_device_fields_map_by_name_and_by_hand() -> None:
    message = device_message(dmi_device())
    assert (message.namespace, message.name) == ("default", "thermo-1")
    assert message.spec.deviceModelReference == "thermo"
    assert message.spec.protocol.protocolName == "modbus"
    assert unpack(message.spec.protocol.configData.data["slaveID"]) == 1.0
    setpoint, temperature = message.spec.properties
    assert setpoint.name == "setpoint"
    assert setpoint.desired.value == "25"
    assert dict(setpoint.desired.metadata) == {"type": "int"}
    assert (setpoint.collectCycle, setpoint.reportCycle, setpoint.reportToCloud) == (1000, 1000, True)
    assert setpoint.visitors.protocolName == "modbus"
    assert {k: unpack(v) for k, v in setpoint.visitors.configData.data.items()} == {
        "register": "HoldingRegister", "offset": 2.0, "scale": 0.5, "isSwap": False}
    assert [m.name for m in message.spec.methods] == ["adjust"]
    assert list(message.spec.methods[0].propertyNames) == ["setpoint"]
    assert temperature.name == "temperature"


def test_the_models_visitors_are_defaults_the_device_overrides_key_by_key() -> None:
    merged = overridden(dmi_device(), dmi_model())
    temperature = merged["spec"]["properties"][1]
    assert temperature["visitors"]["configData"] == {"register": "InputRegister", "limit": 1, "offset": 7}
    assert dmi_device()["spec"]["properties"][1]["visitors"]["configData"] == {"offset": 7}  # not changed in place
    message = device_message(dmi_device(), dmi_model())
    assert unpack(message.spec.properties[1].visitors.configData.data["register"]) == "InputRegister"


def test_state_report_and_status_twins() -> None:
    obj = dmi_device()
    obj["spec"]["stateReport"] = {"reportCycle": 5000, "reportToCloud": True}
    obj["status"] = {"twins": [{"propertyName": "setpoint", "reported": {"value": "24", "metadata": {"type": "int"}}}]}
    message = device_message(obj)
    assert (message.status.reportCycle, message.status.reportToCloud) == (5000, True)
    assert message.status.twins[0].reported.value == "24"


def test_a_device_that_cannot_be_converted_says_where() -> None:
    obj = dmi_device()
    obj["spec"]["properties"][0]["visitors"]["configData"]["table"] = [1, 2]
    with pytest.raises(Unconvertible, match=r"spec.properties\[0\].visitors.configData.table"):
        device_message(obj)
    bad_cycle = dmi_device()
    bad_cycle["spec"]["properties"][0]["collectCycle"] = "soon"
    with pytest.raises(Unconvertible, match="collectCycle"):
        device_message(bad_cycle)


def test_model_properties() -> None:
    message = model_message(dmi_model())
    assert (message.namespace, message.name) == ("default", "thermo")
    assert [(p.name, p.type, p.accessMode) for p in message.spec.properties] == [
        ("temperature", "FLOAT", "ReadOnly"), ("setpoint", "INT", "ReadWrite")]
    assert message.spec.properties[0].unit == "C"


def test_push_method_keys_match_dmi_fields_case_insensitively_as_go_reads_them() -> None:
    # The CRD says hostName, requestPath, TDEngine; DMI's fields are hostname, requestpath, tdengine. edgecore's
    # Go JSON reader matches them regardless of case; a by-name reader would drop them without a word.
    obj = dmi_device()
    obj["spec"]["properties"][1]["pushMethod"] = {
        "http": {"hostName": "http://127.0.0.1", "port": 8080, "requestPath": "/data", "timeout": 500},
        "mqtt": {"address": "tcp://127.0.0.1:1883", "topic": "t/1", "qos": 1, "retained": True},
        "dbMethod": {"TDEngine": {"TDEngineClientConfig": {"addr": "db:6041", "dbName": "d"}},
                     "influxdb2": {"influxdb2DataConfig": {"tag": {"Site": "North"}}}}}
    push = device_message(obj).spec.properties[1].pushMethod
    assert (push.http.hostname, push.http.port, push.http.requestpath, push.http.timeout) == (
        "http://127.0.0.1", 8080, "/data", 500)
    assert (push.mqtt.address, push.mqtt.topic, push.mqtt.qos, push.mqtt.retained) == (
        "tcp://127.0.0.1:1883", "t/1", 1, True)
    assert (push.dbMethod.tdengine.tdEngineClientConfig.addr, push.dbMethod.tdengine.tdEngineClientConfig.dbname) \
        == ("db:6041", "d")
    assert dict(push.dbMethod.influxdb2.influxdb2DataConfig.tag) == {"Site": "North"}  # map keys as given
