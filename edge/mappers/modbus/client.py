"""One device's Modbus TCP connection on pymodbus: read a property, write one, tell a dead server from a bad request.

The only module that imports pymodbus (an import-linter contract says so). Two kinds of failure are kept
apart because the poller answers them differently: ``Unreachable`` (no connection, a timeout, a closed socket)
makes the device offline until a reconnect succeeds; ``RequestRefused`` (the server answered with a Modbus
exception, such as an illegal data address) is one property's problem while the device stays online.
"""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from edge.errors import EdgeError
from edge.mappers.modbus.codec import decode_bits, decode_words
from edge.mappers.modbus.config import ProtocolConfig, Register, VisitorConfig

_Request = Callable[[], ModbusPDU]


class Unreachable(EdgeError, ConnectionError):
    """The Modbus server cannot be reached or stopped answering."""


class RequestRefused(EdgeError):
    """The server answered a request with a Modbus exception."""


class RegisterClient:
    """Reads and writes a device's registers; not thread-safe (one poller thread owns it)."""

    def __init__(self, protocol: ProtocolConfig) -> None:
        self.protocol = protocol
        self.address = f"{protocol.host}:{protocol.port}"
        # retries=0: a failed request is reported at once; the poller's backoff does the retrying.
        self._client = ModbusTcpClient(protocol.host, port=protocol.port, timeout=protocol.timeout_ms / 1000,
                                       retries=0)

    def connect(self) -> None:
        """Open the TCP connection, or raise Unreachable."""
        if not self._client.connect():
            raise Unreachable(f"cannot connect to the Modbus server at {self.address}")

    def close(self) -> None:
        self._client.close()

    def read(self, visitor: VisitorConfig) -> str:
        """The property's current value as its twin string."""
        if visitor.register.is_bits:
            return decode_bits(visitor, self.read_bits(visitor.register, visitor.offset, visitor.limit))
        return decode_words(visitor, self.read_words(visitor.register, visitor.offset, visitor.limit))

    def read_words(self, register: Register, start: int, count: int) -> list[int]:
        """``count`` holding or input registers from ``start``, in one request (blocks.py: several properties)."""
        unit = self.protocol.slave_id
        if register is Register.HOLDING:
            answer = self._call(lambda: self._client.read_holding_registers(start, count=count, device_id=unit),
                                register, start)
        elif register is Register.INPUT:
            answer = self._call(lambda: self._client.read_input_registers(start, count=count, device_id=unit),
                                register, start)
        else:
            raise ValueError(f"{register.value} holds bits, not registers")
        registers = list(answer.registers)
        if len(registers) != count:
            raise RequestRefused(f"asked {self.address} for {count} register(s) at {start}, got {len(registers)}")
        return registers

    def read_bits(self, register: Register, start: int, count: int) -> list[bool]:
        """``count`` coils or discrete inputs from ``start``, in one request."""
        unit = self.protocol.slave_id
        if register is Register.COIL:
            answer = self._call(lambda: self._client.read_coils(start, count=count, device_id=unit), register, start)
        elif register is Register.DISCRETE_INPUT:
            answer = self._call(lambda: self._client.read_discrete_inputs(start, count=count, device_id=unit),
                                register, start)
        else:
            raise ValueError(f"{register.value} holds registers, not bits")
        bits = list(answer.bits[:count])
        if len(bits) != count:
            raise RequestRefused(f"asked {self.address} for {count} bit(s) at {start}, got {len(bits)}")
        return bits

    def write_words(self, visitor: VisitorConfig, words: list[int]) -> None:
        unit, start = self.protocol.slave_id, visitor.offset
        if len(words) == 1:
            self._call(lambda: self._client.write_register(start, words[0], device_id=unit), visitor.register, start)
        else:
            self._call(lambda: self._client.write_registers(start, words, device_id=unit), visitor.register, start)

    def write_bits(self, visitor: VisitorConfig, bits: list[bool]) -> None:
        unit, start = self.protocol.slave_id, visitor.offset
        if len(bits) == 1:
            self._call(lambda: self._client.write_coil(start, bits[0], device_id=unit), visitor.register, start)
        else:
            self._call(lambda: self._client.write_coils(start, bits, device_id=unit), visitor.register, start)

    def _call(self, request: _Request, register: Register, start: int) -> ModbusPDU:
        where = f"{register.value} {start} on {self.address}"
        if not self._client.connected:
            raise Unreachable(f"{self.address}: not connected")
        try:
            answer = request()
        except ModbusException as exc:  # ConnectionException, ModbusIOException: the transport failed
            self._client.close()
            raise Unreachable(f"{where}: {exc}") from exc
        if answer.isError():
            raise RequestRefused(f"{where}: the server answered with Modbus exception {answer.exception_code}")
        return answer

