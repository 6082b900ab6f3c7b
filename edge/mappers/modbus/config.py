"""A Modbus device's settings as KubeEdge's v1beta1 Device spells them, parsed once into types.

Two maps reach a Modbus mapper (through DMI, as ``configData``): the device's ``spec.protocol.configData``
(where the server is) and each property's ``spec.properties[].visitors.configData`` (which registers hold the
value and how to decode them). The keys are those of KubeEdge's Modbus mapper (mapper-framework generation):

- protocol: ``communicateMode`` (TCP or RTU), ``ip``, ``port``, ``slaveID``, ``timeout``; RTU's ``serialName``,
  ``baudRate``, ``dataBits``, ``stopBits``, ``parity``, ``rs485Enabled``.
- visitor: ``register`` (CoilRegister, DiscreteInputRegister, HoldingRegister, InputRegister), ``offset``,
  ``limit`` (how many registers or bits), ``scale``, ``isSwap`` (bytes within each register),
  ``isRegisterSwap`` (order of the registers), ``dataType`` (int, float, double, boolean, string).

Honour or refuse: a key we do not know, a value of the wrong type or out of range, and Modbus RTU (serial lines
are not served by this mapper) are refused with a ``ModbusConfigError`` that names the field, so that a device
is never polled with half of its settings silently dropped.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.errors import EdgeError

PROTOCOL_PATH = "protocol.configData"
VISITOR_PATH = "visitors.configData"

DEFAULT_PORT = 502
DEFAULT_SLAVE_ID = 1
"""KubeEdge's Go structs leave an omitted slaveID at 0 (the broadcast address, which many servers ignore);
unit 1 is what pymodbus and most devices use when none is configured."""
DEFAULT_TIMEOUT_MS = 3000

MAX_READ_REGISTERS = 125  # Modbus application protocol: at most 125 registers per read request
MAX_READ_BITS = 2000  # and at most 2000 coils or discrete inputs

RTU_KEYS = frozenset({"serialName", "baudRate", "dataBits", "stopBits", "parity", "rs485Enabled"})
TCP_KEYS = frozenset({"communicateMode", "ip", "port", "slaveID", "timeout"})
VISITOR_KEYS = frozenset({"register", "offset", "limit", "scale", "isSwap", "isRegisterSwap", "dataType"})


class ModbusConfigError(EdgeError, ValueError):
    """A configData the mapper cannot honour; the message names the field."""


class Register(enum.Enum):
    """The four Modbus tables, by the names KubeEdge's configData uses."""

    COIL = "CoilRegister"
    DISCRETE_INPUT = "DiscreteInputRegister"
    HOLDING = "HoldingRegister"
    INPUT = "InputRegister"

    @property
    def is_bits(self) -> bool:
        """Coils and discrete inputs hold single bits; the other two hold 16-bit words."""
        return self in (Register.COIL, Register.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        """Modbus can write coils and holding registers only; inputs are the device's to change."""
        return self in (Register.COIL, Register.HOLDING)


class DataType(enum.Enum):
    """How the registers' bytes become a twin value; the value is the twin's ``metadata.type``."""

    INT = "int"
    FLOAT = "float"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    STRING = "string"


_DATA_TYPE_NAMES = {
    "int": DataType.INT,
    "integer": DataType.INT,
    "float": DataType.FLOAT,
    "double": DataType.DOUBLE,
    "boolean": DataType.BOOLEAN,
    "bool": DataType.BOOLEAN,
    "string": DataType.STRING,
}
"""KubeEdge's Modbus mapper says ``bool``, its DeviceModel says ``BOOLEAN`` and twins say ``boolean``: all one type."""

_WORD_LIMITS = {DataType.INT: (1, 2, 4), DataType.FLOAT: (2,), DataType.DOUBLE: (4,)}
"""Registers a number spans: 16, 32 or 64-bit integers, IEEE 754 single (2 registers) and double (4)."""


@dataclass(frozen=True)
class ProtocolConfig:
    """Where a device's Modbus TCP server is."""

    host: str
    port: int = DEFAULT_PORT
    slave_id: int = DEFAULT_SLAVE_ID
    timeout_ms: int = DEFAULT_TIMEOUT_MS


@dataclass(frozen=True)
class VisitorConfig:
    """Which registers hold one property and how to decode them."""

    register: Register
    offset: int
    data_type: DataType
    limit: int = 1
    scale: float = 1.0
    is_swap: bool = False
    is_register_swap: bool = False


def parse_data_type(name: str, field: str) -> DataType:
    """``int``/``INT``/``bool``/``BOOLEAN``... into a DataType, or refuse naming ``field``."""
    found = _DATA_TYPE_NAMES.get(name.strip().lower())
    if found is None:
        raise ModbusConfigError(
            f"{field}: unsupported data type {name!r} (one of int, float, double, boolean, string)")
    return found


def parse_protocol(config: Mapping[str, Any]) -> ProtocolConfig:
    """A device's ``spec.protocol.configData`` for Modbus TCP."""
    if not isinstance(config, Mapping):
        raise ModbusConfigError(f"{PROTOCOL_PATH}: expected a map, got {type(config).__name__}")
    mode = config.get("communicateMode", "TCP")
    if not isinstance(mode, str):
        raise ModbusConfigError(f"{PROTOCOL_PATH}.communicateMode: expected TCP, got {mode!r}")
    serial = sorted(RTU_KEYS & config.keys())
    if mode.upper() == "RTU" or serial:
        named = f"communicateMode {mode}" if mode.upper() == "RTU" else ", ".join(serial)
        raise ModbusConfigError(
            f"{PROTOCOL_PATH}: Modbus RTU (serial line) is not supported by this mapper, only Modbus TCP ({named})")
    if mode.upper() != "TCP":
        raise ModbusConfigError(f"{PROTOCOL_PATH}.communicateMode: {mode!r} is neither TCP nor RTU")
    _refuse_unknown(config, TCP_KEYS, PROTOCOL_PATH)
    host = config.get("ip")
    if not isinstance(host, str) or not host.strip():
        raise ModbusConfigError(f"{PROTOCOL_PATH}.ip: the Modbus TCP server's address is required")
    return ProtocolConfig(
        host=host.strip(),
        port=_port(config.get("port", DEFAULT_PORT)),
        slave_id=_integer(config, "slaveID", PROTOCOL_PATH, DEFAULT_SLAVE_ID, 0, 255),
        timeout_ms=_integer(config, "timeout", PROTOCOL_PATH, DEFAULT_TIMEOUT_MS, 1, 600_000),
    )


def parse_visitor(config: Mapping[str, Any], model_type: str | None = None) -> VisitorConfig:
    """A property's ``visitors.configData``; ``model_type`` (the DeviceModel property's type) stands in for
    an omitted ``dataType``, as KubeEdge's mappers take the twin's type when the visitor names none."""
    if not isinstance(config, Mapping):
        raise ModbusConfigError(f"{VISITOR_PATH}: expected a map, got {type(config).__name__}")
    _refuse_unknown(config, VISITOR_KEYS, VISITOR_PATH)
    raw_register = config.get("register")
    try:
        register = Register(raw_register)
    except ValueError:
        names = ", ".join(r.value for r in Register)
        raise ModbusConfigError(f"{VISITOR_PATH}.register: {raw_register!r} is not one of {names}") from None
    type_name = config.get("dataType", model_type)
    if type_name is None:
        raise ModbusConfigError(f"{VISITOR_PATH}.dataType: missing, and the device model gives no type")
    if not isinstance(type_name, str):
        raise ModbusConfigError(f"{VISITOR_PATH}.dataType: expected a string, got {type_name!r}")
    data_type = parse_data_type(type_name, f"{VISITOR_PATH}.dataType")
    most = MAX_READ_BITS if register.is_bits else MAX_READ_REGISTERS
    limit = _integer(config, "limit", VISITOR_PATH, 1, 1, most)
    visitor = VisitorConfig(
        register=register,
        offset=_integer(config, "offset", VISITOR_PATH, None, 0, 65535),
        data_type=data_type,
        limit=limit,
        scale=_scale(config.get("scale", 1.0)),
        is_swap=_flag(config, "isSwap"),
        is_register_swap=_flag(config, "isRegisterSwap"),
    )
    if visitor.offset + limit > 65536:
        raise ModbusConfigError(f"{VISITOR_PATH}.limit: offset {visitor.offset} + limit {limit} passes address 65535")
    _check_width(visitor)
    return visitor


def _check_width(visitor: VisitorConfig) -> None:
    """Refuse a dataType the registers cannot hold, before the first read rather than at every one."""
    where = f"{VISITOR_PATH}.dataType"
    if visitor.register.is_bits:
        if visitor.data_type not in (DataType.BOOLEAN, DataType.INT):
            raise ModbusConfigError(f"{where}: {visitor.register.value} holds bits, readable as boolean or int, "
                                    f"not {visitor.data_type.value}")
        if visitor.data_type is DataType.INT and visitor.limit > 64:
            raise ModbusConfigError(f"{VISITOR_PATH}.limit: an int of {visitor.limit} bits does not fit in 64")
        return
    widths = _WORD_LIMITS.get(visitor.data_type)
    if widths is not None and visitor.limit not in widths:
        counts = " or ".join(str(w) for w in widths)
        raise ModbusConfigError(
            f"{VISITOR_PATH}.limit: a {visitor.data_type.value} spans {counts} register(s), not {visitor.limit}")


def _refuse_unknown(config: Mapping[str, Any], known: frozenset[str], path: str) -> None:
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise ModbusConfigError(f"{path}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _integer(config: Mapping[str, Any], key: str, path: str, default: int | None, low: int, high: int) -> int:
    value = config.get(key, default)
    if value is None:
        raise ModbusConfigError(f"{path}.{key}: required")
    # A JSON number that went through a float (protobuf's FloatValue, a YAML 2.0) is still an integer.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModbusConfigError(f"{path}.{key}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ModbusConfigError(f"{path}.{key}: {value} is outside {low}..{high}")
    return value


def _port(value: Any) -> int:
    # KubeEdge's Go struct has the port as a string ("502"), its documentation as a number (502): take both.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return _integer({"port": value}, "port", PROTOCOL_PATH, None, 1, 65535)


def _scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModbusConfigError(f"{VISITOR_PATH}.scale: expected a number, got {value!r}")
    if value == 0 or not math.isfinite(value):
        # KubeEdge multiplies by an omitted scale's 0 and reports 0 for ever; refuse a 0 written out.
        raise ModbusConfigError(f"{VISITOR_PATH}.scale: {value} would not give a usable value")
    return _unfloat32(float(value))


def _unfloat32(value: float) -> float:
    """Undo the float32 rounding DMI applies to every configData number (KubeEdge packs them as FloatValue).

    ``scale: 0.1`` arrives as 0.10000000149011612, and 1013.25 scaled by it would read 101.325001 instead of
    101.325000. A number that is exactly a float32 is taken to be the float32 of the shortest decimal that
    rounds to it; a number that is not a float32 did not come through DMI and is kept as it is.
    """
    as_float32: float = struct.unpack(">f", struct.pack(">f", value))[0]
    if as_float32 != value:
        return value
    for digits in range(1, 10):
        shorter = float(f"{value:.{digits}g}")
        if struct.unpack(">f", struct.pack(">f", shorter))[0] == value:
            return shorter
    return value


def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise ModbusConfigError(f"{VISITOR_PATH}.{key}: expected true or false, got {value!r}")
    return value
