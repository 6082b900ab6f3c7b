"""A DMI Device and its model as the Modbus side's settings (edge/mappers/modbus/fromdmi.py), and the mapper's
KubeEdge config.yaml (edge/mappers/modbus/main.py)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edge.dmi.convert import device_message, model_message
from edge.mappers.base import DmiClient, MapperIdentity
from edge.mappers.modbus.config import DataType, ModbusConfigError, Register
from edge.mappers.modbus.fromdmi import device_spec
from edge.mappers.modbus.main import kubeedge_config, parse
from edge.mappers.modbus.mapper import ModbusMapper
from runtime.settings import SettingsError
from schemas.dmi.v1beta1 import api_pb2 as pb
from tests.support.dmi import dmi_device, dmi_model


def test_a_dmi_device_becomes_the_spec_the_modbus_side_polls() -> None:
    model = dmi_model()
    model["spec"]["properties"][0]["visitors"]["configData"]["limit"] = 2  # a FLOAT spans two registers
    spec = device_spec(device_message(dmi_device(), model), model_message(model))
    assert (spec.namespace, spec.name, spec.protocol.host, spec.protocol.slave_id) == (
        "default", "thermo-1", "127.0.0.1", 1)
    setpoint = spec.property("setpoint")
    # numbers came as FloatValue (as KubeEdge packs them): offset 2.0 is register 2, scale 0.5 stays 0.5
    assert (setpoint.visitor.register, setpoint.visitor.offset, setpoint.visitor.scale) == (Register.HOLDING, 2, 0.5)
    assert (setpoint.desired, setpoint.writable, setpoint.collect_cycle_ms) == ("25", True, 1000)
    assert setpoint.visitor.data_type is DataType.INT  # from the model's type INT
    temperature = spec.property("temperature")
    # the model's visitor (InputRegister, limit 1) under the device's own (offset 7); ReadOnly from the model
    assert (temperature.visitor.register, temperature.visitor.offset, temperature.visitor.data_type) == (
        Register.INPUT, 7, DataType.FLOAT)
    assert (temperature.writable, temperature.desired) == (False, None)


def test_a_device_the_mapper_cannot_honour_is_refused_naming_the_field() -> None:
    device = dmi_device()
    device["spec"]["properties"][0]["visitors"]["configData"]["register"] = "Nowhere"
    with pytest.raises(ModbusConfigError, match=r"properties\[setpoint\]\.visitors\.configData\.register"):
        device_spec(device_message(device, dmi_model()), model_message(dmi_model()))


def test_kubeedge_mapper_config_sets_the_sockets_and_refuses_what_is_not_honoured(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("grpc_server:\n  socket_path: /tmp/m/modbus.sock\n"
                      "common:\n  name: Modbus-mapper\n  version: v1.13.0\n  api_version: v1.0.0\n"
                      "  protocol: modbus\n  address: 127.0.0.1\n  edgecore_sock: /tmp/m/dmi.sock\n")
    assert kubeedge_config(config) == {"socket": "/tmp/m/modbus.sock", "dmi_socket": "/tmp/m/dmi.sock",
                                       "name": "Modbus-mapper", "version": "v1.13.0"}
    settings = parse(["--config-file", str(config), "--socket", "/tmp/m/other.sock"])
    assert (settings.socket, settings.dmi_socket) == ("/tmp/m/other.sock", "/tmp/m/dmi.sock")  # the flag wins
    config.write_text("common:\n  http_port: 7777\n")
    assert kubeedge_config(config) == {"api_listen": "0.0.0.0:7777"}  # the method API, bound as KubeEdge binds it
    config.write_text("database:\n  redis: {addr: 127.0.0.1:6379}\n")
    with pytest.raises(SettingsError, match=r"database\.redis is not supported"):
        kubeedge_config(config)
    config.write_text("common:\n  protocol: opcua\n")
    with pytest.raises(SettingsError, match="this mapper is modbus's"):
        kubeedge_config(config)


class Aborted(Exception):
    pass


class Context:
    """Only ``abort``, as grpc's servicer context does it: it raises, so nothing after it runs."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def test_a_device_the_mapper_cannot_honour_is_refused_over_dmi_and_not_kept(tmp_path: Path) -> None:
    # The DMI client is never called here (no device is served), so no edge needs to listen on its socket.
    mapper = ModbusMapper(MapperIdentity("m", "modbus", str(tmp_path / "m.sock")), DmiClient(str(tmp_path / "d.sock")))
    try:
        mapper.CreateDeviceModel(pb.CreateDeviceModelRequest(model=model_message(dmi_model())), Context())  # type: ignore[arg-type]
        bad = dmi_device()
        bad["spec"]["protocol"]["configData"]["communicateMode"] = "RTU"
        with pytest.raises(Aborted) as refused:
            mapper.RegisterDevice(pb.RegisterDeviceRequest(device=device_message(bad, dmi_model())), Context())  # type: ignore[arg-type]
        code, details = refused.value.args
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "default/thermo-1" in details
        assert "Modbus RTU" in details
        assert mapper.devices == {}
        assert mapper.modbus.devices() == []
    finally:
        mapper.stop()
