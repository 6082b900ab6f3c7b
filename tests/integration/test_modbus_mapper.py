"""The Modbus mapper's devices against a real Modbus TCP server (pymodbus's, a process on loopback).

What a device's registers hold reaches the report callback within its cycles; desired values reach the
registers; the device goes offline when the server goes away and online when it comes back, with no restart
of the mapper.
"""

from __future__ import annotations

import itertools
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.mappers.modbus.codec import EncodeError
from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.devices import ModbusDevices
from edge.mappers.modbus.schedule import phase
from edge.mappers.modbus.spec import (
    DeviceInput,
    DeviceReport,
    DeviceSpec,
    DeviceState,
    MapperEvent,
    PropertyError,
    PropertyInput,
    StateChange,
    parse_device,
)
from runtime.backoff import Backoff
from tests.fixtures.modbus import ModbusServer
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.slow

NS = "default"
CYCLE_MS = 200
COIL = 1500  # coils share the server's block with the registers: kept far from the registers used here


class Events:
    """Everything the devices emitted, with when it arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[float, MapperEvent]] = []

    def __call__(self, event: MapperEvent) -> None:
        with self._lock:
            self._events.append((time.monotonic(), event))

    def all(self) -> list[tuple[float, MapperEvent]]:
        with self._lock:
            return list(self._events)

    def reading(self, prop: str, value: str, since: float = 0.0) -> float | None:
        """When a report of ``prop`` with ``value`` first arrived after ``since``."""
        for at, event in self.all():
            if at >= since and isinstance(event, DeviceReport) and any(
                    r.property == prop and r.value == value for r in event.readings):
                return at
        return None

    def states(self) -> list[DeviceState]:
        return [e.state for _, e in self.all() if isinstance(e, StateChange)]

    def errors(self) -> list[PropertyError]:
        return [e for _, e in self.all() if isinstance(e, PropertyError)]


def prop(name: str, config: dict[str, Any], model_type: str = "INT", desired: str | None = None,
         access_mode: str = "ReadWrite") -> PropertyInput:
    return PropertyInput(name, config, model_type=model_type, access_mode=access_mode, collect_cycle_ms=CYCLE_MS,
                         report_cycle_ms=CYCLE_MS, desired=desired)


def device(server: ModbusServer, *props: PropertyInput, name: str = "meter") -> DeviceSpec:
    return parse_device(DeviceInput(NS, name, {"communicateMode": "TCP", "ip": server.host, "port": server.port,
                                               "slaveID": 1, "timeout": 1000}, props))


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def mapper(events: Events) -> Iterator[ModbusDevices]:
    devices = ModbusDevices(events, backoff=lambda: Backoff(initial=0.1, maximum=0.5))
    try:
        yield devices
    finally:
        devices.close()


def until(probe: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    return wait_until(probe, timeout=timeout, what=what)


def test_register_changes_reach_the_reports_within_the_cycles(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    mapper.apply(device(
        modbus_server,
        prop("temperature", {"register": "InputRegister", "offset": 10, "scale": 0.1}),
        prop("pressure", {"register": "HoldingRegister", "offset": 20, "limit": 2, "dataType": "float",
                          "isRegisterSwap": True}),
        prop("door", {"register": "DiscreteInputRegister", "offset": COIL}, model_type="BOOLEAN"),
    ))
    until(lambda: events.reading("temperature", "0"), "the first reading of temperature")
    assert mapper.state(NS, "meter") is DeviceState.ONLINE

    changed = time.monotonic()
    modbus_server.set_holding(10, [215])  # the input register 10 is the holding register 10 on this server
    seen = until(lambda: events.reading("temperature", "21", since=changed), "temperature 21 (215 x 0.1)")
    # Read within a collect cycle, reported within a report cycle: allow one of each and a margin for 2 cores.
    assert seen - changed < (2 * CYCLE_MS) / 1000 + 1.0, f"{seen - changed:.2f} s from register to report"

    low, high = struct.unpack(">HH", struct.pack(">f", 1013.25))
    modbus_server.set_holding(20, [high, low])  # isRegisterSwap: the low word first
    until(lambda: events.reading("pressure", "1013.250000"), "pressure from two swapped registers")

    modbus_server.set_coil(COIL, True)
    until(lambda: events.reading("door", "true"), "the discrete input door")
    assert events.errors() == []


def controller(server: ModbusServer, setpoint: str) -> DeviceSpec:
    """A device with a writable 32-bit setpoint, a coil, an input register and a ReadOnly holding register."""
    return device(
        server,
        prop("setpoint", {"register": "HoldingRegister", "offset": 30, "limit": 2, "isSwap": True}, desired=setpoint),
        prop("fan", {"register": "CoilRegister", "offset": COIL + 1}, model_type="BOOLEAN"),
        prop("level", {"register": "InputRegister", "offset": 31}),
        prop("limit", {"register": "HoldingRegister", "offset": 40}, access_mode="ReadOnly"),
    )


def test_desired_values_reach_the_registers(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    mapper.apply(controller(modbus_server, setpoint="70000"))
    # 70000 = 0x00011170; isSwap swaps the bytes inside each register.
    until(lambda: modbus_server.holding(30, 2) == [0x0100, 0x7011], "the Device's desired setpoint in registers 30-31")
    until(lambda: events.reading("setpoint", "70000"), "the written setpoint read back")

    mapper.set_desired(NS, "meter", "fan", "true")
    until(lambda: modbus_server.coil(COIL + 1), "the fan coil switched on")
    until(lambda: events.reading("fan", "true"), "the fan coil read back")

    # A Device update that only changes a desired value writes it, without restarting the device's polling.
    states_before = events.states()
    mapper.apply(controller(modbus_server, setpoint="5"))
    until(lambda: modbus_server.holding(30, 2) == [0, 0x0500], "the updated setpoint in registers 30-31")
    assert events.states() == states_before

    # Refused before anything is queued: an input register, a ReadOnly property, a value too big.
    with pytest.raises(ModbusConfigError, match="InputRegister cannot be written"):
        mapper.set_desired(NS, "meter", "level", "3")
    with pytest.raises(ModbusConfigError, match="accessMode is ReadOnly"):
        mapper.set_desired(NS, "meter", "limit", "3")
    with pytest.raises(EncodeError, match="outside the 32-bit unsigned range"):
        mapper.set_desired(NS, "meter", "setpoint", str(2**32))
    with pytest.raises(KeyError):
        mapper.set_desired(NS, "meter", "nosuch", "1")
    assert modbus_server.holding(30, 2) == [0, 0x0500]
    assert modbus_server.holding(31, 1) == [0x0500]
    assert modbus_server.holding(40, 1) == [0]


def test_state_follows_the_server_going_away_and_coming_back(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    mapper.apply(device(modbus_server, prop("count", {"register": "HoldingRegister", "offset": 50})))
    until(lambda: events.states() == [DeviceState.ONLINE], "the device online")

    modbus_server.kill()  # as a power cut: no goodbye on the TCP connection's other end
    until(lambda: events.states() == [DeviceState.ONLINE, DeviceState.OFFLINE], "the device offline")
    assert mapper.state(NS, "meter") is DeviceState.OFFLINE

    modbus_server.start()  # a fresh server on the same port: its registers start at 0
    until(lambda: events.states()[-1:] == [DeviceState.ONLINE], "the device online again")
    back = time.monotonic()
    modbus_server.set_holding(50, [9])
    until(lambda: events.reading("count", "9", since=back), "a reading from the restarted server")

    modbus_server.stop()  # an orderly stop (SIGTERM) this time
    until(lambda: events.states()[-1:] == [DeviceState.OFFLINE], "the device offline after a clean stop")
    modbus_server.start()
    until(lambda: events.states()[-1:] == [DeviceState.ONLINE], "the device online after the second restart")
    states = events.states()
    assert all(a is not b for a, b in itertools.pairwise(states)), f"repeated states: {states}"


def test_a_device_applied_before_its_server_exists_goes_online_when_it_starts(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    modbus_server.kill()
    mapper.apply(device(modbus_server, prop("count", {"register": "HoldingRegister", "offset": 60},
                                            desired="12")))
    until(lambda: events.states() == [DeviceState.OFFLINE], "the device offline while no server listens")
    modbus_server.start()
    until(lambda: events.states() == [DeviceState.OFFLINE, DeviceState.ONLINE], "the device online")
    # The desired value that could not be written while the server was away is written once it is back.
    until(lambda: modbus_server.holding(60) == [12], "the desired value written after the server came up")

    mapper.remove(NS, "meter")
    assert mapper.state(NS, "meter") is None



def client_ports(server_port: int) -> set[int]:
    """Local ports of the established TCP connections to ``server_port`` on loopback (from /proc/net/tcp)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) == server_port:
            ports.add(int(local.split(":")[1], 16))
    return ports


def test_a_server_that_hangs_is_offline_until_it_answers_again(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    mapper.apply(device(modbus_server, prop("count", {"register": "HoldingRegister", "offset": 70})))
    until(lambda: events.states() == [DeviceState.ONLINE], "the device online")
    first = client_ports(modbus_server.port)
    assert modbus_server.process is not None
    os.kill(modbus_server.process.pid, signal.SIGSTOP)  # the kernel still accepts connections; nothing answers
    try:
        until(lambda: events.states() == [DeviceState.ONLINE, DeviceState.OFFLINE],
              "the device offline once a request times out")
        # The mapper reconnects (the kernel accepts for the stopped server), its requests time out, it lets go:
        # a connection alone does not make the device online.
        again = until(lambda: client_ports(modbus_server.port) - first, "the mapper reconnecting")
        until(lambda: not again & client_ports(modbus_server.port), "the mapper giving up on the silent connection")
        assert events.states() == [DeviceState.ONLINE, DeviceState.OFFLINE]
    finally:
        os.kill(modbus_server.process.pid, signal.SIGCONT)
    until(lambda: events.states() == [DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.ONLINE],
          "the device online when the server answers again")


def test_a_register_the_server_refuses_is_told_once_and_the_others_go_on(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    mapper.apply(device(modbus_server, prop("good", {"register": "HoldingRegister", "offset": 80}),
                        prop("bad", {"register": "HoldingRegister", "offset": 5000})))  # past the server's block
    until(lambda: sum(1 for _, e in events.all() if isinstance(e, DeviceReport)) >= 4, "four reports of good")
    errors = events.errors()
    assert [(e.property, "Modbus exception 2" in e.reason) for e in errors] == [("bad", True)], errors
    assert events.states() == [DeviceState.ONLINE]
    assert all(r.property == "good" for _, e in events.all() if isinstance(e, DeviceReport) for r in e.readings)


def test_devices_started_together_read_and_report_at_their_own_phase(
        modbus_server: ModbusServer, mapper: ModbusDevices, events: Events) -> None:
    cycle_ms = 1000
    names = [f"meter-{i}" for i in range(6)]

    def spread(name: str, offset: int) -> DeviceSpec:
        props = [PropertyInput(p, {"register": "HoldingRegister", "offset": offset + i}, model_type="INT",
                               collect_cycle_ms=cycle_ms, report_cycle_ms=cycle_ms,
                               desired="7" if name == names[0] and p == "a" else None)
                 for i, p in enumerate(("a", "b", "c"))]
        return parse_device(DeviceInput(NS, name, {"ip": modbus_server.host, "port": modbus_server.port,
                                                   "slaveID": 1, "timeout": 1000}, tuple(props)))

    started = time.monotonic()
    for index, name in enumerate(names):
        mapper.apply(spread(name, 100 + 10 * index))

    def reports(name: str) -> list[tuple[float, DeviceReport]]:
        return [(at, e) for at, e in events.all() if isinstance(e, DeviceReport) and e.name == name]

    until(lambda: all(len(reports(n)) >= 3 for n in names), "three reports of every device", timeout=30)
    for name in names:
        due = started + phase(NS, name) * cycle_ms / 1000
        (first_at, _), *later = reports(name)
        if name != names[0]:  # the first device's desired value is written, read back and reported at once
            assert first_at >= due, f"{name} reported {due - first_at:.3f} s before its phase"
            online = next(at for at, e in events.all() if isinstance(e, StateChange) and e.name == name)
            assert online >= due, f"{name} was online before the server answered a read"
        # one report per step with all of the device's properties: the phase is the device's, not each property's
        assert all(sorted(r.property for r in report.readings) == ["a", "b", "c"] for _, report in later[:2])
    assert modbus_server.holding(100) == [7]
    assert events.errors() == []
