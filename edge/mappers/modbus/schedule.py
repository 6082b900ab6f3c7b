"""When each property of a device is first read and reported: spread over its cycle, not all at the start.

A mapper that starts (or is given) a hundred devices used to start every poll cycle in the same instant, so
that every collectCycle the CPU and the reports to the edge came in one burst, and the edge took a hundred
reports at once each second instead of one every 10 ms. Each device now starts its cycles at a phase of its
own: a fraction of the cycle taken from a hash of its namespace and name, the same on every run and in every
process (so tests and benchmarks stay reproducible; Python's ``hash`` is salted per process and is not used).

The phase is the device's, not each property's: a device's properties with equal cycles stay in one step, so
they are read one after the other on its one Modbus connection and reported in one ReportDeviceStatus, as
before. A phase per property would split each device's report into one per property. The cycles themselves
are unchanged; only their first due time moves, by less than one cycle.
"""

from __future__ import annotations

import hashlib

from edge.mappers.modbus.spec import DeviceSpec

MANTISSA_BITS = 53
"""A float holds 53 bits exactly: a fraction of that many bits over 2**53 is below 1.0, never rounded up to it."""


def phase(namespace: str, name: str) -> float:
    """The device's fraction of each cycle, in [0, 1), from a stable hash of namespace/name."""
    digest = hashlib.blake2b(f"{namespace}/{name}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - MANTISSA_BITS)) / float(1 << MANTISSA_BITS)


def first_due(start: float, cycle_ms: int, fraction: float) -> float:
    """The first due time of a cycle of ``cycle_ms`` started at ``start`` with the device's phase ``fraction``."""
    return start + fraction * cycle_ms / 1000


def initial_grid(spec: DeviceSpec, start: float) -> tuple[dict[str, float], dict[str, float]]:
    """Each property's first collect and first report time (monotonic seconds) for a device polled from ``start``.

    Both at the same phase of their own cycle: with equal collectCycle and reportCycle a property read in a
    step is reported in that step, as when both grids started at ``start``."""
    fraction = phase(spec.namespace, spec.name)
    collect = {p.name: first_due(start, p.collect_cycle_ms, fraction) for p in spec.properties}
    report = {p.name: first_due(start, p.report_cycle_ms, fraction) for p in spec.properties}
    return collect, report
