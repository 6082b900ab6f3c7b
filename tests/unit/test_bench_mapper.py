"""``bench mapper``'s own logic: the fleet's registers and manifests, and the figures read from Device statuses."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from edge.mappers.modbus.config import DataType, Register, parse_protocol, parse_visitor
from edgehive.bench.cli import add_arguments
from edgehive.bench.harness import BenchError
from edgehive.bench.mapper import bench_mapper
from edgehive.bench.mapperfleet import Fleet, StatusTally, cores, latencies, rate, ratio


def device(name: str, twins: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A Device as the watch gives it: (property, value, timestamp) per twin."""
    return {"metadata": {"name": name}, "status": {"twins": [
        {"propertyName": p, "reported": {"value": v, "metadata": {"timestamp": ts, "type": "int"}}}
        for p, v, ts in twins]}}


def test_every_property_has_a_register_of_its_own() -> None:
    fleet = Fleet(devices=100, properties=10)
    offsets = {fleet.offset(i, j) for i in range(100) for j in range(10)}
    assert offsets == set(range(fleet.registers))
    assert fleet.registers == 1000
    assert fleet.offered_per_s == 1000.0
    assert Fleet(devices=2, properties=2, collect_cycle_ms=500).offered_per_s == 8.0


@pytest.mark.parametrize(("devices", "properties", "cycle", "field"), [
    (0, 10, 1000, "devices"), (10, 0, 1000, "properties"), (10, 10, 50, "collect_cycle_ms"),
    (1000, 100, 1000, "65536")])
def test_a_fleet_that_cannot_run_is_refused_by_name(devices: int, properties: int, cycle: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Fleet(devices, properties, cycle)


def test_the_modbus_device_is_what_the_mapper_parses() -> None:
    """The configData the bench writes is read by the mapper's own parsers as one int holding register."""
    fleet = Fleet(devices=3, properties=4, collect_cycle_ms=1000)
    manifest = fleet.modbus_device(2, "node-a", 1502)
    protocol = parse_protocol(manifest["spec"]["protocol"]["configData"])
    assert (protocol.host, protocol.port, protocol.slave_id) == ("127.0.0.1", 1502, 1)
    props = manifest["spec"]["properties"]
    assert [p["name"] for p in props] == ["p0", "p1", "p2", "p3"]
    assert all(p["collectCycle"] == 1000 and "reportCycle" not in p for p in props)
    visitor = parse_visitor(props[3]["visitors"]["configData"], "INT")
    assert (visitor.register, visitor.offset, visitor.limit, visitor.data_type) == (Register.HOLDING, 11, 1,
                                                                                    DataType.INT)
    assert fleet.model("m", "modbus")["spec"]["protocol"] == "modbus"
    assert "protocol" not in fleet.model("m", None)["spec"]
    assert "protocol" not in fleet.mqtt_device(0, "node-a")["spec"]


def test_a_value_counts_once_per_timestamp_and_per_fleet() -> None:
    tally = StatusTally()
    tally.feed(device("mb-0", [("p0", "0", "100"), ("p1", "0", "100")]), now=1)
    tally.feed(device("mb-0", [("p0", "0", "100"), ("p1", "0", "100")]), now=2)  # the same status again
    assert tally.count("mb-") == 2
    tally.feed(device("mb-0", [("p0", "0", "200"), ("p1", "0", "100")]), now=3)  # p0 reported again, unchanged
    assert tally.count("mb-") == 3
    tally.feed(device("mq-0", [("p0", "7", "300")]), now=4)
    tally.feed(device("other", [("p0", "7", "300")]), now=5)  # not the bench's
    assert (tally.count("mb-"), tally.count("mq-")) == (3, 1)
    assert tally.seen("mb-0", "p0", "0") == 1
    assert tally.seen("mq-0", "p0", "7") == 4
    assert tally.seen("other", "p0", "7") is None


def test_a_twin_without_a_reported_value_counts_nothing() -> None:
    tally = StatusTally()
    tally.feed({"metadata": {"name": "mb-0"}, "status": {"twins": [{"propertyName": "p0"}, "junk"]}}, now=1)
    tally.feed({"metadata": {"name": "mb-1"}}, now=1)
    assert tally.count("mb-") == 0
    assert not tally.complete("mb-", 1, 1)


def test_a_fleet_is_complete_once_every_property_showed_a_value() -> None:
    tally = StatusTally()
    tally.feed(device("mb-0", [("p0", "1", "1"), ("p1", "1", "1")]), now=1)
    assert not tally.complete("mb-", 2, 2)
    tally.feed(device("mb-1", [("p0", "1", "1"), ("p1", "1", "1")]), now=1)
    assert tally.complete("mb-", 2, 2)
    assert not tally.complete("mq-", 1, 1)


def test_latencies_run_from_the_sending_to_the_first_appearance() -> None:
    tally = StatusTally()
    tally.feed(device("mb-0", [("p0", "5", "1")]), now=1_500)
    tally.feed(device("mb-0", [("p0", "5", "2")]), now=9_000)  # seen again later: the first sighting counts
    sent = {("mb-0", "p0", "5"): 1_000, ("mb-0", "p0", "6"): 1_200}  # 6 never reached the status
    assert latencies(sent, tally) == [500]


def test_rates_ratio_and_cores() -> None:
    assert rate(100, 1100, 2.0) == 500.0
    assert rate(0, 10, 0) == 0.0
    assert ratio(900.0, 1000.0) == 0.9
    assert ratio(900.0, 0.0) == 0.0
    assert cores({"mapper": 3.0, "dmi": 0.0}, 10.0) == {"mapper": 0.3, "dmi": 0.0}


def test_the_subcommand_takes_the_issues_size_by_default() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["mapper"])
    assert (args.devices, args.properties, args.collect_cycle_ms, args.json) == (100, 10, 1000, False)
    args = parser.parse_args(["mapper", "--devices", "2", "--properties", "2", "--seconds", "5", "--json"])
    assert (args.devices, args.properties, args.seconds, args.json) == (2, 2, 5.0, True)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"devices": 0}, "devices"), ({"seconds": 1.0}, "seconds"), ({"change_rate": 0.0}, "change_rate"),
    ({"seconds": 1000.0, "change_rate": 100.0}, "65535")])
def test_a_bench_that_cannot_run_is_refused_before_anything_starts(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(BenchError, match=field):
        bench_mapper(progress=False, **kwargs)
