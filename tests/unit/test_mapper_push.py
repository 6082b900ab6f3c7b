"""A property's pushMethod as the Modbus mapper takes it (edge/mappers/push.py): honoured, or refused by field."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from edge.dmi.convert import device_message
from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.fromdmi import device_spec
from edge.mappers.push import HttpPush, MqttPush, PushRefused, parse_push
from runtime.url import BrokerUrl
from schemas.dmi.v1beta1 import api_pb2 as pb
from tests.support.dmi import dmi_device, dmi_model

WHERE = "properties[t].pushMethod"


def method(push: dict[str, Any]) -> pb.PushMethod:
    obj = copy.deepcopy(dmi_device())
    obj["spec"]["properties"][1]["pushMethod"] = push
    return device_message(obj).spec.properties[1].pushMethod  # as DMI gives it, spelled as in the CRD


def test_mqtt_is_honoured_with_kubeedges_addresses() -> None:
    target = parse_push(method({"mqtt": {"address": "tcp://10.0.0.5:1884", "topic": "plant/t", "qos": 2,
                                         "retained": True}}), WHERE)
    assert target == MqttPush(BrokerUrl("10.0.0.5", 1884), "plant/t", 2, True)
    tls = parse_push(method({"mqtt": {"address": "ssl://u:p@broker", "topic": "x"}}), WHERE)
    assert isinstance(tls, MqttPush)
    assert (tls.url.tls, tls.url.port, tls.url.username, tls.qos, tls.retained) == (True, 8883, "u", 0, False)


def test_http_is_honoured_and_its_timeout_is_milliseconds() -> None:
    target = parse_push(method({"http": {"hostName": "http://127.0.0.1", "port": 8080, "requestPath": "/in",
                                         "timeout": 250}}), WHERE)
    assert target == HttpPush("http://127.0.0.1:8080/in", 0.25)
    assert parse_push(method({"http": {"hostName": "https://sink", "port": 443}}), WHERE) == HttpPush(
        "https://sink:443", 5.0)


def test_no_push_method_pushes_nothing() -> None:
    assert parse_push(pb.PushMethod(), WHERE) is None


@pytest.mark.parametrize(("push", "field"), [
    ({"otel": {"endpointURL": "http://collector:4318"}}, f"{WHERE}.otel"),
    ({"dbMethod": {"influxdb2": {"influxdb2ClientConfig": {"url": "http://influx:8086"}}}},
     f"{WHERE}.dbMethod.influxdb2"),
    ({"dbMethod": {"redis": {"redisClientConfig": {"addr": "r:6379"}}}}, f"{WHERE}.dbMethod.redis"),
    ({"dbMethod": {"TDEngine": {"TDEngineClientConfig": {"addr": "td:6041"}}}}, f"{WHERE}.dbMethod.tdengine"),
    ({"dbMethod": {"mysql": {"mysqlClientConfig": {"addr": "db:3306"}}}}, f"{WHERE}.dbMethod.mysql"),
    ({"mqtt": {"address": "tcp://b:1883", "topic": "t"}, "http": {"hostName": "http://h", "port": 80}}, WHERE),
    ({"mqtt": {"address": "ws://b:80", "topic": "t"}}, f"{WHERE}.mqtt.address"),
    ({"mqtt": {"address": "127.0.0.1:1883", "topic": "t"}}, f"{WHERE}.mqtt.address"),
    ({"mqtt": {"address": "tcp://b:1883"}}, f"{WHERE}.mqtt.topic"),
    ({"mqtt": {"address": "tcp://b:1883", "topic": "a/#"}}, f"{WHERE}.mqtt.topic"),
    ({"mqtt": {"address": "tcp://b:1883", "topic": "t", "qos": 3}}, f"{WHERE}.mqtt.qos"),
    ({"http": {"hostName": "127.0.0.1", "port": 80}}, f"{WHERE}.http.hostName"),
    ({"http": {"hostName": "http://h:81", "port": 80}}, f"{WHERE}.http.hostName"),
    ({"http": {"hostName": "http://h", "port": 0}}, f"{WHERE}.http.port"),
    ({"http": {"hostName": "http://h", "port": 80, "requestPath": "in"}}, f"{WHERE}.http.requestPath"),
    ({"http": {"hostName": "http://h", "port": 80, "timeout": -1}}, f"{WHERE}.http.timeout"),
])
def test_what_cannot_be_honoured_is_refused_by_field(push: dict[str, Any], field: str) -> None:
    with pytest.raises(PushRefused) as caught:
        parse_push(method(push), WHERE)
    assert str(caught.value).startswith(field + ":")


def test_a_refused_push_method_refuses_the_device_naming_the_property() -> None:
    obj = copy.deepcopy(dmi_device())
    obj["spec"]["properties"][1]["pushMethod"] = {"dbMethod": {"influxdb2": {}}}
    with pytest.raises(ModbusConfigError, match=r"^properties\[temperature\]\.pushMethod\.dbMethod\.influxdb2: "):
        device_spec(device_message(obj), pb.DeviceModel())


def test_an_honoured_push_method_reaches_the_property_spec() -> None:
    obj = copy.deepcopy(dmi_device())
    obj["spec"]["properties"][1]["pushMethod"] = {"mqtt": {"address": "mqtt://b:1883", "topic": "t", "qos": 1}}
    model = pb.DeviceModel()
    model.spec.properties.add(name="temperature", type="INT")
    model.spec.properties.add(name="setpoint", type="INT")
    spec = device_spec(device_message(obj, dmi_model()), model)
    assert spec.property("temperature").push == MqttPush(BrokerUrl("b", 1883), "t", 1, False)
    assert spec.property("setpoint").push is None


def test_payloads_are_the_mapper_frameworks() -> None:
    stamp = int(time.mktime((2026, 12, 4, 12, 34, 56, 0, 0, -1)) * 1000) + 789
    assert MqttPush(BrokerUrl("b", 1883), "plant/t", 1, False).payload("21.5", stamp) == \
        b"time is 2026-12-04 12:34:56  plant/t: 21.5"
    assert HttpPush.payload("temperature", "21.5", stamp) == b"temperature=21.5&time=2026-12-04 12:34:56"
