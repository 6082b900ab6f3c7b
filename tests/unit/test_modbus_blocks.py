"""A device's properties whose registers touch are read in one Modbus request (edge/mappers/modbus/blocks.py),
and the poller reports every property's own value from it; a refused merged read falls back to one request per
property, so that each property keeps its own answer. The poller's client is a fake that records the requests
(the real client and server are in tests/integration/test_modbus_mapper.py)."""

from __future__ import annotations

from typing import Any

from edge.mappers.modbus.blocks import MAX_WORDS, Block, blocks
from edge.mappers.modbus.client import RequestRefused
from edge.mappers.modbus.codec import decode_bits, decode_words
from edge.mappers.modbus.config import Register, VisitorConfig
from edge.mappers.modbus.poller import DevicePoller
from edge.mappers.modbus.spec import (
    DeviceInput,
    DeviceReport,
    DeviceSpec,
    MapperEvent,
    PropertyError,
    PropertyInput,
    parse_device,
)


def device(props: dict[str, dict[str, Any]]) -> DeviceSpec:
    inputs = tuple(PropertyInput(name, {"dataType": "int", **config}) for name, config in props.items())
    return parse_device(DeviceInput("default", "meter-1", {"ip": "127.0.0.1", "port": 5020, "slaveID": 1}, inputs))


def holding(offset: int, limit: int = 1) -> dict[str, Any]:
    return {"register": "HoldingRegister", "offset": offset, "limit": limit}


def shape(found: list[Block]) -> list[tuple[str, int, int, list[str]]]:
    return [(b.register.value, b.start, b.count, [p.name for p in b.properties]) for b in found]


def test_touching_ranges_of_one_table_are_one_request() -> None:
    spec = device({f"p{j}": holding(100 + j) for j in range(10)})
    assert shape(blocks(spec.properties)) == [("HoldingRegister", 100, 10, [f"p{j}" for j in range(10)])]


def test_a_gap_a_table_or_the_size_limit_starts_another_request() -> None:
    spec = device({
        "a": holding(0, 2), "b": holding(2), "c": holding(1),  # touching and overlapping: one request
        "gap": holding(4),  # register 3 is nobody's: it may not exist on the device
        "input": {"register": "InputRegister", "offset": 3},
        "coil0": {"register": "CoilRegister", "offset": 0, "dataType": "boolean"},
        "coil1": {"register": "CoilRegister", "offset": 1, "dataType": "boolean"},
        "big0": {**holding(1000, 100), "dataType": "string"},
        "big1": {**holding(1100, 100), "dataType": "string"}})  # 200 registers: over one read's 125
    assert shape(blocks(spec.properties)) == [
        ("HoldingRegister", 0, 3, ["a", "c", "b"]), ("HoldingRegister", 4, 1, ["gap"]),
        ("HoldingRegister", 1000, 100, ["big0"]), ("HoldingRegister", 1100, 100, ["big1"]),
        ("InputRegister", 3, 1, ["input"]), ("CoilRegister", 0, 2, ["coil0", "coil1"])]
    assert all(b.count <= MAX_WORDS for b in blocks(spec.properties) if not b.register.is_bits)


class FakeClient:
    """A Modbus server's tables in memory; ``refused`` addresses answer with a Modbus exception."""

    address = "127.0.0.1:5020"

    def __init__(self, words: dict[int, int], refused: frozenset[int] = frozenset()) -> None:
        self.words = words
        self.refused = refused
        self.requests: list[tuple[str, int, int]] = []

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read_words(self, register: Register, start: int, count: int) -> list[int]:
        self.requests.append((register.value, start, count))
        if self.refused & set(range(start, start + count)):
            raise RequestRefused(f"{register.value} {start}: the server answered with Modbus exception 2")
        return [self.words.get(a, 0) for a in range(start, start + count)]

    def read_bits(self, register: Register, start: int, count: int) -> list[bool]:
        self.requests.append((register.value, start, count))
        return [bool(self.words.get(a, 0)) for a in range(start, start + count)]

    def read(self, visitor: VisitorConfig) -> str:
        if visitor.register.is_bits:
            return decode_bits(visitor, self.read_bits(visitor.register, visitor.offset, visitor.limit))
        return decode_words(visitor, self.read_words(visitor.register, visitor.offset, visitor.limit))


def step(spec: DeviceSpec, client: FakeClient) -> tuple[DevicePoller, list[MapperEvent]]:
    """A poller whose every property is due now, with ``client`` as its connection."""
    events: list[MapperEvent] = []
    poller = DevicePoller(spec, events.append)
    poller._client = client  # type: ignore[assignment]  # the fake stands for the real connection
    poller._next_collect = dict.fromkeys(poller._next_collect, 0.0)
    poller._next_report = dict.fromkeys(poller._next_report, 0.0)
    return poller, events


def reported(events: list[MapperEvent]) -> dict[str, str]:
    return {r.property: r.value for e in events if isinstance(e, DeviceReport) for r in e.readings}


def test_a_device_of_ten_touching_properties_is_read_in_one_request_and_reported_whole() -> None:
    spec = device({f"p{j}": holding(100 + j) for j in range(10)})
    client = FakeClient({100 + j: 7 * j for j in range(10)})
    poller, events = step(spec, client)
    poller._step()
    assert client.requests == [("HoldingRegister", 100, 10)]
    assert reported(events) == {f"p{j}": str(7 * j) for j in range(10)}
    reports = [e for e in events if isinstance(e, DeviceReport)]
    assert len(reports) == 1  # one report, its readings in the device's order as before
    assert [r.property for r in reports[0].readings] == [f"p{j}" for j in range(10)]


def test_wider_properties_take_their_own_slices() -> None:
    spec = device({"lo": holding(10), "wide": {**holding(11, 2), "dataType": "int"}, "hi": holding(13)})
    client = FakeClient({10: 1, 11: 0x0001, 12: 0x0002, 13: 9})
    poller, events = step(spec, client)
    poller._step()
    assert client.requests == [("HoldingRegister", 10, 4)]
    assert reported(events) == {"lo": "1", "wide": str(0x00010002), "hi": "9"}


def test_a_refused_merged_read_falls_back_to_one_request_per_property_and_stays_so() -> None:
    spec = device({"good0": holding(0), "bad": holding(1), "good2": holding(2)})
    client = FakeClient({0: 5, 2: 6}, refused=frozenset({1}))
    poller, events = step(spec, client)
    poller._step()
    assert client.requests == [("HoldingRegister", 0, 3), ("HoldingRegister", 0, 1), ("HoldingRegister", 1, 1),
                               ("HoldingRegister", 2, 1)]
    assert reported(events) == {"good0": "5", "good2": "6"}  # the others keep their values
    assert [e.property for e in events if isinstance(e, PropertyError)] == ["bad"]  # the bad one its error

    client.requests.clear()
    events.clear()
    poller._next_collect = dict.fromkeys(poller._next_collect, 0.0)
    poller._next_report = dict.fromkeys(poller._next_report, 0.0)
    poller._step()
    assert client.requests == [("HoldingRegister", 0, 1), ("HoldingRegister", 1, 1), ("HoldingRegister", 2, 1)]
    assert reported(events) == {"good0": "5", "good2": "6"}
    assert not [e for e in events if isinstance(e, PropertyError)]  # the same error is told once
