"""When a Modbus device's properties are first read and reported (edge/mappers/modbus/schedule.py): spread over
their cycles by a stable phase per device, the cycles themselves unchanged."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from edge.mappers.modbus.schedule import first_due, initial_grid, phase
from edge.mappers.modbus.spec import DeviceInput, DeviceSpec, PropertyInput, parse_device

ROOT = Path(__file__).resolve().parents[2]


def spec(name: str, cycles: dict[str, tuple[int, int]]) -> DeviceSpec:
    props = tuple(PropertyInput(p, {"register": "HoldingRegister", "offset": i}, model_type="INT",
                                collect_cycle_ms=collect, report_cycle_ms=report)
                  for i, (p, (collect, report)) in enumerate(cycles.items()))
    return parse_device(DeviceInput("default", name, {"ip": "127.0.0.1", "port": 5020, "slaveID": 1}, props))


def test_the_phase_is_the_same_in_every_process() -> None:
    # Python's hash() is salted per process; the phase must not be, or no run could be reproduced
    here = phase("default", "meter-7")
    there = subprocess.run([sys.executable, "-c", "from edge.mappers.modbus.schedule import phase; "
                            "print(repr(phase('default', 'meter-7')))"],
                           capture_output=True, text=True, check=True, cwd=ROOT, env={"PYTHONHASHSEED": "12345"})
    assert float(there.stdout) == here
    assert 0.0 <= here < 1.0
    assert phase("default", "meter-7") != phase("other", "meter-7")  # the namespace counts too


def test_a_hundred_devices_are_spread_over_the_cycle() -> None:
    phases = [phase("default", f"meter-{i}") for i in range(100)]
    assert all(0.0 <= p < 1.0 for p in phases)
    assert len(set(phases)) == 100
    tenths = Counter(int(p * 10) for p in phases)
    # without a phase all 100 were in one instant; now no tenth of the cycle holds more than a quarter of them
    assert len(tenths) == 10
    assert max(tenths.values()) <= 25


def test_the_first_read_and_report_come_at_the_devices_phase_of_each_cycle() -> None:
    device = spec("meter-7", {"power": (1000, 1000), "energy": (5000, 10000), "volts": (1000, 1000)})
    fraction = phase("default", "meter-7")
    collect, report = initial_grid(device, 100.0)
    assert collect == {"power": 100.0 + fraction, "energy": 100.0 + 5 * fraction, "volts": 100.0 + fraction}
    assert report == {"power": 100.0 + fraction, "energy": 100.0 + 10 * fraction, "volts": 100.0 + fraction}
    # properties of one cycle stay in one step: read one after the other, reported together
    assert collect["power"] == collect["volts"] == report["power"]
    # each first due is within the property's first cycle, and the cycles are the device's own
    assert all(100.0 <= collect[p.name] < 100.0 + p.collect_cycle_ms / 1000 for p in device.properties)
    assert [p.collect_cycle_ms for p in device.properties] == [1000, 5000, 1000]


def test_first_due() -> None:
    assert first_due(10.0, 2000, 0.0) == 10.0
    assert first_due(10.0, 2000, 0.25) == 10.5
    assert first_due(10.0, 0, 0.9) == 10.0
