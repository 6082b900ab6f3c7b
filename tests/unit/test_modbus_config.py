"""The Modbus mapper's configData parsing: KubeEdge's fields honoured, anything else refused by name."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from edge.mappers.modbus.config import (
    DataType,
    ModbusConfigError,
    ProtocolConfig,
    Register,
    VisitorConfig,
    parse_protocol,
    parse_visitor,
)
from edge.mappers.modbus.spec import DeviceInput, PropertyInput, parse_device


def test_kubeedge_sample_protocol_and_visitor_parse() -> None:
    # KubeEdge's v1beta1 Device sample: protocol configData with ip and a numeric port; a holding register.
    assert parse_protocol({"ip": "172.17.0.3", "port": 1502}) == ProtocolConfig(host="172.17.0.3", port=1502)
    visitor = parse_visitor({"register": "HoldingRegister", "offset": 2, "limit": 1, "scale": 1, "isSwap": True,
                             "isRegisterSwap": True}, model_type="INT")
    assert visitor == VisitorConfig(register=Register.HOLDING, offset=2, data_type=DataType.INT, limit=1, scale=1.0,
                                    is_swap=True, is_register_swap=True)


def test_protocol_fields_of_the_mapper_framework_generation() -> None:
    parsed = parse_protocol({"communicateMode": "TCP", "ip": "10.0.0.5", "port": "5020", "slaveID": 7,
                             "timeout": 500})
    assert parsed == ProtocolConfig(host="10.0.0.5", port=5020, slave_id=7, timeout_ms=500)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"communicateMode": "RTU", "serialName": "/dev/ttyS0"}, "communicateMode RTU"),
        ({"serialName": "/dev/ttyS0", "baudRate": 9600}, "baudRate, serialName"),
    ],
)
def test_rtu_is_refused_naming_it(config: dict[str, Any], named: str) -> None:
    with pytest.raises(ModbusConfigError, match="Modbus RTU") as caught:
        parse_protocol(config)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"port": 502}, "protocol.configData.ip"),
        ({"ip": "h", "port": 70000}, "protocol.configData.port"),
        ({"ip": "h", "port": "http"}, "protocol.configData.port"),
        ({"ip": "h", "slaveID": "one"}, "protocol.configData.slaveID"),
        ({"ip": "h", "communicateMode": "UDP"}, "protocol.configData.communicateMode"),
        ({"ip": "h", "tls": True}, "unknown field(s) tls"),
    ],
)
def test_bad_protocol_fields_are_named(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ModbusConfigError, match=field.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        parse_protocol(config)


def test_data_type_comes_from_the_visitor_then_the_model() -> None:
    base = {"register": "HoldingRegister", "offset": 0, "limit": 2}
    assert parse_visitor({**base, "dataType": "float"}, model_type="INT").data_type is DataType.FLOAT
    assert parse_visitor(base, model_type="FLOAT").data_type is DataType.FLOAT
    assert parse_visitor({"register": "CoilRegister", "offset": 1}, model_type="BOOLEAN").data_type is DataType.BOOLEAN
    with pytest.raises(ModbusConfigError, match=r"dataType: missing"):
        parse_visitor(base)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"register": "DiscreteInputsRegister", "offset": 0}, r"register: 'DiscreteInputsRegister' is not one of"),
        ({"register": "HoldingRegister"}, r"offset: required"),
        ({"register": "HoldingRegister", "offset": -1}, r"offset: -1 is outside 0\.\.65535"),
        ({"register": "HoldingRegister", "offset": 0, "limit": 0}, r"limit: 0 is outside 1\.\.125"),
        ({"register": "HoldingRegister", "offset": 65535, "limit": 2, "dataType": "float"}, r"passes address 65535"),
        ({"register": "HoldingRegister", "offset": 0, "limit": 3}, r"limit: a int spans 1 or 2 or 4 register"),
        ({"register": "HoldingRegister", "offset": 0, "limit": 1, "dataType": "double"}, r"double spans 4"),
        ({"register": "HoldingRegister", "offset": 0, "scale": 0}, r"scale: 0 would not give"),
        ({"register": "HoldingRegister", "offset": 0, "scale": "x"}, r"scale: expected a number"),
        ({"register": "HoldingRegister", "offset": 0, "isSwap": "yes"}, r"isSwap: expected true or false"),
        ({"register": "CoilRegister", "offset": 0, "dataType": "float"}, r"holds bits, readable as boolean or int"),
        ({"register": "HoldingRegister", "offset": 0, "dataType": "bytes"}, r"unsupported data type 'bytes'"),
        ({"register": "HoldingRegister", "offset": 0, "value": 3}, r"unknown field\(s\) value"),
    ],
)
def test_bad_visitor_fields_are_named(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ModbusConfigError, match=r"visitors\.configData") as caught:
        parse_visitor(config, model_type="INT")
    assert caught.match(message)


def test_an_integral_float_is_an_integer_and_defaults_apply() -> None:
    visitor = parse_visitor({"register": "InputRegister", "offset": 4.0}, model_type="int")
    assert (visitor.offset, visitor.limit, visitor.scale, visitor.is_swap, visitor.is_register_swap) == (
        4, 1, 1.0, False, False)
    with pytest.raises(ModbusConfigError, match="offset: expected an integer"):
        parse_visitor({"register": "InputRegister", "offset": 4.5}, model_type="int")


def test_a_device_names_the_bad_property_and_takes_defaults_from_kubeedge() -> None:
    good = PropertyInput("temp", {"register": "InputRegister", "offset": 1}, model_type="INT",
                         access_mode="ReadOnly", desired="")
    spec = parse_device(DeviceInput("default", "thermo", {"ip": "127.0.0.1", "port": 502}, [good]))
    prop = spec.property("temp")
    assert (prop.collect_cycle_ms, prop.report_cycle_ms, prop.writable, prop.desired) == (1000, 1000, False, None)
    bad = PropertyInput("hum", {"register": "InputRegister", "offset": 1, "limt": 2}, model_type="INT")
    with pytest.raises(ModbusConfigError, match=r"^properties\[hum\]\.visitors\.configData: unknown field\(s\) limt"):
        parse_device(DeviceInput("default", "thermo", {"ip": "127.0.0.1"}, [good, bad]))
    with pytest.raises(ModbusConfigError, match=r"properties\[temp\]\.collectCycle"):
        parse_device(DeviceInput("default", "thermo", {"ip": "127.0.0.1"},
                                 [PropertyInput("temp", {"register": "InputRegister", "offset": 1},
                                                model_type="INT", collect_cycle_ms=-5)]))
    with pytest.raises(ModbusConfigError, match="temp appear more than once"):
        parse_device(DeviceInput("default", "thermo", {"ip": "127.0.0.1"}, [good, good]))


def test_numbers_that_came_through_dmi_as_float32_are_taken_as_the_decimals_written() -> None:
    # DMI packs every configData number as a protobuf FloatValue (float32), as KubeEdge does.
    through_dmi = struct.unpack(">f", struct.pack(">f", 0.1))[0]
    assert through_dmi != 0.1
    visitor = parse_visitor({"register": "HoldingRegister", "offset": 2.0, "limit": 2.0, "scale": through_dmi,
                             "dataType": "float"})
    assert (visitor.offset, visitor.limit, visitor.scale) == (2, 2, 0.1)
    assert parse_visitor({"register": "HoldingRegister", "offset": 0, "scale": 0.123456789},
                         model_type="INT").scale == 0.123456789  # not a float32: kept as written
    assert parse_protocol({"ip": "h", "port": 1502.0, "slaveID": 3.0}) == ProtocolConfig("h", 1502, 3)
