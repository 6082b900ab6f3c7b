"""Our DMI descriptor against KubeEdge's dmi/v1beta1, fact by fact, and bytes a Go mapper would send.

A mapper built with KubeEdge's mapper framework talks to edgehive only if every method path, message, field
number and field type of schemas/dmi/v1beta1/api.proto is what its Go code was generated from: a renumbered
field still compiles on both sides and silently carries the wrong value. The facts below were taken from
KubeEdge v1.23.1 (commit 1a7ee88d3c61; its api.proto is unchanged on master at 16cd8548eedb, 2026-08-06) and
are written in a notation of our own: (field name, number, type), in declaration order, where a type is a
scalar, a message name, ``repeated X`` or ``map<K, V>``. The golden bytes are the protobuf encoding worked out
by hand from those numbers and wire types, so they hold even if both our .proto and the table were wrong alike.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from schemas.dmi.v1beta1 import api_pb2 as pb

Field = descriptor_pb2.FieldDescriptorProto

MESSAGES: dict[str, tuple[tuple[str, int, str], ...]] = {
    "MapperRegisterRequest": (("withData", 1, "bool"), ("mapper", 2, "MapperInfo")),
    "MapperRegisterResponse": (("modelList", 1, "repeated DeviceModel"), ("deviceList", 2, "repeated Device")),
    "DeviceModel": (("name", 1, "string"), ("spec", 2, "DeviceModelSpec"), ("namespace", 3, "string")),
    "DeviceModelSpec": (("properties", 1, "repeated ModelProperty"), ("commands", 2, "repeated DeviceCommand")),
    "ModelProperty": (
        ("name", 1, "string"), ("description", 2, "string"), ("type", 3, "string"), ("accessMode", 4, "string"),
        ("minimum", 5, "string"), ("maximum", 6, "string"), ("unit", 7, "string"),
    ),
    "DeviceCommand": (
        ("name", 1, "string"), ("url", 2, "string"), ("method", 3, "string"), ("status_code", 4, "repeated string"),
        ("parameters", 5, "repeated string"), ("response", 6, "bytes"),
    ),
    "Device": (
        ("name", 1, "string"), ("spec", 2, "DeviceSpec"), ("status", 3, "DeviceStatus"), ("namespace", 4, "string"),
    ),
    "DeviceSpec": (
        ("deviceModelReference", 1, "string"), ("protocol", 2, "ProtocolConfig"),
        ("properties", 3, "repeated DeviceProperty"), ("methods", 4, "repeated DeviceMethod"),
    ),
    "DeviceMethod": (("name", 1, "string"), ("description", 2, "string"), ("propertyNames", 3, "repeated string")),
    "DeviceProperty": (
        ("name", 1, "string"), ("desired", 2, "TwinProperty"), ("visitors", 3, "VisitorConfig"),
        ("reportCycle", 4, "int64"), ("collectCycle", 5, "int64"), ("reportToCloud", 6, "bool"),
        ("pushMethod", 7, "PushMethod"),
    ),
    "ProtocolConfig": (("protocolName", 1, "string"), ("configData", 2, "CustomizedValue")),
    "VisitorConfig": (("protocolName", 1, "string"), ("configData", 2, "CustomizedValue")),
    "CustomizedValue": (("data", 1, "map<string, google.protobuf.Any>"),),
    "PushMethod": (
        ("http", 1, "PushMethodHTTP"), ("mqtt", 2, "PushMethodMQTT"), ("otel", 4, "PushMethodOTEL"),
        ("dbMethod", 3, "DBMethod"), ("anomalyDetection", 5, "AnomalyDetection"),
    ),
    "PushMethodHTTP": (
        ("hostname", 1, "string"), ("port", 2, "int64"), ("requestpath", 3, "string"), ("timeout", 4, "int64"),
    ),
    "PushMethodMQTT": (("address", 1, "string"), ("topic", 2, "string"), ("qos", 3, "int32"), ("retained", 4, "bool")),
    "PushMethodOTEL": (("endpointURL", 1, "string"),),
    "DBMethod": (
        ("influxdb2", 1, "DBMethodInfluxdb2"), ("redis", 2, "DBMethodRedis"), ("tdengine", 3, "DBMethodTDEngine"),
        ("mysql", 4, "DBMethodMySQL"),
    ),
    "DBMethodInfluxdb2": (
        ("influxdb2ClientConfig", 1, "Influxdb2ClientConfig"), ("influxdb2DataConfig", 2, "Influxdb2DataConfig"),
    ),
    "Influxdb2DataConfig": (("measurement", 1, "string"), ("tag", 2, "map<string, string>"), ("fieldKey", 3, "string")),
    "Influxdb2ClientConfig": (("url", 1, "string"), ("org", 2, "string"), ("bucket", 3, "string")),
    "DBMethodRedis": (("redisClientConfig", 1, "RedisClientConfig"),),
    "RedisClientConfig": (
        ("addr", 1, "string"), ("db", 2, "int32"), ("poolsize", 3, "int32"), ("minIdleConns", 4, "int32"),
    ),
    "DBMethodTDEngine": (("tdEngineClientConfig", 1, "TDEngineClientConfig"),),
    "TDEngineClientConfig": (("addr", 1, "string"), ("dbname", 2, "string")),
    "DBMethodMySQL": (("mysqlClientConfig", 1, "MySQLClientConfig"),),
    "MySQLClientConfig": (("addr", 1, "string"), ("database", 2, "string"), ("userName", 3, "string")),
    "DBMethodOTEL": (("otelExporterConfig", 1, "OTELExporterConfig"),),
    "OTELExporterConfig": (("endpointURL", 1, "string"),),
    "AnomalyDetection": (("data", 1, "map<string, google.protobuf.Any>"),),
    "MapperInfo": (
        ("name", 1, "string"), ("version", 2, "string"), ("api_version", 3, "string"), ("protocol", 4, "string"),
        ("address", 5, "bytes"), ("state", 6, "string"),
    ),
    "ReportDeviceStatusRequest": (
        ("deviceName", 1, "string"), ("reportedDevice", 2, "DeviceStatus"), ("deviceNamespace", 3, "string"),
    ),
    "ReportDeviceStatesRequest": (
        ("deviceName", 1, "string"), ("deviceNamespace", 2, "string"), ("state", 3, "string"),
    ),
    "DeviceStatus": (("twins", 1, "repeated Twin"), ("reportToCloud", 2, "bool"), ("reportCycle", 3, "int64")),
    "Twin": (("propertyName", 1, "string"), ("observedDesired", 2, "TwinProperty"), ("reported", 3, "TwinProperty")),
    "TwinProperty": (("value", 1, "string"), ("metadata", 2, "map<string, string>")),
    "ReportDeviceStatusResponse": (),
    "ReportDeviceStatesResponse": (),
    "RegisterDeviceRequest": (("device", 1, "Device"),),
    "RegisterDeviceResponse": (("deviceName", 1, "string"), ("deviceNamespace", 2, "string")),
    "CreateDeviceModelRequest": (("model", 1, "DeviceModel"),),
    "CreateDeviceModelResponse": (("deviceModelName", 1, "string"), ("deviceModelNamespace", 2, "string")),
    "RemoveDeviceRequest": (("deviceName", 1, "string"), ("deviceNamespace", 2, "string")),
    "RemoveDeviceResponse": (),
    "RemoveDeviceModelRequest": (("modelName", 1, "string"), ("modelNamespace", 2, "string")),
    "RemoveDeviceModelResponse": (),
    "UpdateDeviceRequest": (("device", 1, "Device"),),
    "UpdateDeviceResponse": (),
    "UpdateDeviceModelRequest": (("model", 1, "DeviceModel"),),
    "UpdateDeviceModelResponse": (),
    "GetDeviceRequest": (("deviceName", 1, "string"), ("deviceNamespace", 2, "string")),
    "GetDeviceResponse": (("device", 1, "Device"),),
}
SERVICES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "DeviceManagerService": (
        ("MapperRegister", "MapperRegisterRequest", "MapperRegisterResponse"),
        ("ReportDeviceStatus", "ReportDeviceStatusRequest", "ReportDeviceStatusResponse"),
        ("ReportDeviceStates", "ReportDeviceStatesRequest", "ReportDeviceStatesResponse"),
    ),
    "DeviceMapperService": (
        ("RegisterDevice", "RegisterDeviceRequest", "RegisterDeviceResponse"),
        ("RemoveDevice", "RemoveDeviceRequest", "RemoveDeviceResponse"),
        ("UpdateDevice", "UpdateDeviceRequest", "UpdateDeviceResponse"),
        ("CreateDeviceModel", "CreateDeviceModelRequest", "CreateDeviceModelResponse"),
        ("RemoveDeviceModel", "RemoveDeviceModelRequest", "RemoveDeviceModelResponse"),
        ("UpdateDeviceModel", "UpdateDeviceModelRequest", "UpdateDeviceModelResponse"),
        ("GetDevice", "GetDeviceRequest", "GetDeviceResponse"),
    ),
}

SCALARS = {Field.TYPE_STRING: "string", Field.TYPE_BOOL: "bool", Field.TYPE_INT64: "int64",
           Field.TYPE_INT32: "int32", Field.TYPE_BYTES: "bytes"}
"""The only scalar types dmi/v1beta1 uses; any other type in ours shows as itself and fails the comparison."""


def ours() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    return proto


def _type_name(name: str) -> str:
    """``.v1beta1.Twin`` -> ``Twin``; ``.google.protobuf.Any`` stays whole (no other package is used)."""
    return name.removeprefix(".v1beta1.") if name.startswith(".v1beta1.") else name.removeprefix(".")


def _scalar_or_message(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type == Field.TYPE_MESSAGE:
        return _type_name(field.type_name)
    return SCALARS.get(field.type, f"type {field.type}")


def notation(message: descriptor_pb2.DescriptorProto) -> tuple[tuple[str, int, str], ...]:
    """The message's fields in the table's notation; a map is recognised by its generated entry message."""
    entries = {nested.name: nested for nested in message.nested_type if nested.options.map_entry}
    out = []
    for field in message.field:
        entry = entries.get(field.type_name.rsplit(".", 1)[-1]) if field.type == Field.TYPE_MESSAGE else None
        if entry is not None:
            key, value = entry.field
            kind = f"map<{_scalar_or_message(key)}, {_scalar_or_message(value)}>"
        else:
            kind = ("repeated " if field.label == Field.LABEL_REPEATED else "") + _scalar_or_message(field)
        out.append((field.name, field.number, kind))
    return tuple(out)


def test_the_file_is_kubeedges_package_in_proto3() -> None:
    proto = ours()
    # the package names every method path (/v1beta1.DeviceManagerService/MapperRegister) and every Any's type URL
    assert (proto.package, proto.syntax) == ("v1beta1", "proto3")
    assert list(proto.dependency) == ["google/protobuf/any.proto"]
    assert not proto.enum_type  # dmi/v1beta1 has none


def test_every_message_and_field_is_kubeedges() -> None:
    messages = {message.name: message for message in ours().message_type}
    assert sorted(messages) == sorted(MESSAGES)
    for name, fields in MESSAGES.items():
        assert notation(messages[name]) == fields, name
        # proto3 fields with no oneof and no 'optional': presence and the wire are as in KubeEdge's Go code
        assert not messages[name].oneof_decl, name
        assert not [f.name for f in messages[name].field if f.proto3_optional], name
        assert not [n.name for n in messages[name].nested_type if not n.options.map_entry], name


def test_every_service_and_method_is_kubeedges() -> None:
    services = {service.name: service for service in ours().service}
    assert sorted(services) == sorted(SERVICES)
    for name, methods in SERVICES.items():
        got = tuple((m.name, _type_name(m.input_type), _type_name(m.output_type)) for m in services[name].method)
        assert got == methods, name
        assert not [m.name for m in services[name].method if m.client_streaming or m.server_streaming], name
    assert pb.DESCRIPTOR.services_by_name["DeviceManagerService"].full_name == "v1beta1.DeviceManagerService"


# MapperRegisterRequest{withData: true, mapper: {name: "modbus-mapper", version: "v1.0", api_version: "v1beta1",
# protocol: "modbus", address: "/tmp/m.sock"}}. A tag is (number << 3 | wire type): 0 varint, 2 length-delimited.
REGISTER = (
    b"\x08\x01"                        # 1 withData, varint: true
    b"\x12\x33"                        # 2 mapper, length-delimited: 51 bytes follow
    b"\x0a\x0d" b"modbus-mapper"       #   1 name: 13 bytes
    b"\x12\x04" b"v1.0"                #   2 version: 4
    b"\x1a\x07" b"v1beta1"             #   3 api_version: 7
    b"\x22\x06" b"modbus"              #   4 protocol: 6
    b"\x2a\x0b" b"/tmp/m.sock"         #   5 address (bytes): 11
)

# ReportDeviceStatusRequest{deviceName: "thermo-1", deviceNamespace: "default", reportedDevice: {reportToCloud:
# true, reportCycle: 1000, twins: [{propertyName: "temperature", reported: {value: "23.5",
# metadata: {"type": "float"}}}]}}. A map entry is a message of key = 1 and value = 2.
REPORT = (
    b"\x0a\x08" b"thermo-1"            # 1 deviceName: 8 bytes
    b"\x12\x2b"                        # 2 reportedDevice (DeviceStatus): 43 bytes follow
    b"\x0a\x24"                        #   1 twins[0] (Twin): 36
    b"\x0a\x0b" b"temperature"         #     1 propertyName: 11
    b"\x1a\x15"                        #     3 reported (TwinProperty): 21
    b"\x0a\x04" b"23.5"                #       1 value: 4
    b"\x12\x0d"                        #       2 metadata entry: 13
    b"\x0a\x04" b"type"                #         1 key: 4
    b"\x12\x05" b"float"               #         2 value: 5
    b"\x10\x01"                        #   2 reportToCloud, varint: true
    b"\x18\xe8\x07"                    #   3 reportCycle, varint: 1000 = 0x68 | 0x80, then 7
    b"\x1a\x07" b"default"             # 3 deviceNamespace: 7
)


def register_message() -> pb.MapperRegisterRequest:
    return pb.MapperRegisterRequest(withData=True, mapper=pb.MapperInfo(
        name="modbus-mapper", version="v1.0", api_version="v1beta1", protocol="modbus", address=b"/tmp/m.sock"))


def report_message() -> pb.ReportDeviceStatusRequest:
    reported = pb.TwinProperty(value="23.5", metadata={"type": "float"})
    return pb.ReportDeviceStatusRequest(
        deviceName="thermo-1", deviceNamespace="default",
        reportedDevice=pb.DeviceStatus(twins=[pb.Twin(propertyName="temperature", reported=reported)],
                                       reportToCloud=True, reportCycle=1000))


def test_a_registration_has_the_bytes_worked_out_by_hand_both_ways() -> None:
    assert len(REGISTER) == 4 + 0x33
    assert register_message().SerializeToString() == REGISTER
    parsed = pb.MapperRegisterRequest.FromString(REGISTER)
    assert parsed == register_message()
    assert (parsed.withData, parsed.mapper.protocol, parsed.mapper.address) == (True, "modbus", b"/tmp/m.sock")


def test_a_status_report_has_the_bytes_worked_out_by_hand_both_ways() -> None:
    assert len(REPORT) == 10 + 2 + 0x2B + 9
    assert report_message().SerializeToString() == REPORT
    parsed = pb.ReportDeviceStatusRequest.FromString(REPORT)
    assert parsed == report_message()
    (twin,) = parsed.reportedDevice.twins
    assert (twin.propertyName, twin.reported.value, dict(twin.reported.metadata)) == (
        "temperature", "23.5", {"type": "float"})
    assert not twin.HasField("observedDesired")


def test_fields_in_another_order_and_unknown_ones_read_the_same() -> None:
    """A sender may write fields in any order, and a newer KubeEdge may add fields: both still parse to the
    same values (the unknown field is kept, not an error), as protobuf promises and a Go mapper relies on."""
    device_name, status, namespace = REPORT[:10], REPORT[10:10 + 2 + 0x2B], REPORT[10 + 2 + 0x2B:]
    unknown = b"\xa0\x06\x2a"  # field 100, varint 42
    parsed = pb.ReportDeviceStatusRequest.FromString(namespace + unknown + status + device_name)
    assert (parsed.deviceName, parsed.deviceNamespace) == ("thermo-1", "default")
    assert parsed.reportedDevice == report_message().reportedDevice
    assert unknown in parsed.SerializeToString()
