"""``edgehive bench mapper``: Modbus devices polled by the Modbus mapper and reported through DMI, to the Device
status in the API server; against the same readings published directly on ``$hw/events``.

On one real edge node (its components and the DMI process), the real ``edgehive mapper modbus`` polls
``devices`` x ``properties`` holding registers of pymodbus's real Modbus TCP server every ``collect_cycle_ms``
and reports them to DMI, which hands them to DeviceTwin; DeviceTwin sends them up, DeviceController writes the
Device status. A watch on the Devices in the API server counts the values that reach the status.

- ``dmi_reports_per_s``: reported values per second reaching the Device status, over ``seconds``.
- ``register_to_status_ms``: p50/p99 from a register changed on the server (its write acknowledged) to the
  new value in the Device status, ``change_rate`` changes per second during the same window (goal: p50 at most
  one collect cycle plus 500 ms; the collect cycle alone makes up to one cycle of it).
- ``dmi_cpu_cores``: the mapper's, DMI's, DeviceTwin's and the Modbus server's CPU over that window.
- The baseline, in the same run before the mapper starts: the same number of readings (every property of as
  many devices once per collect cycle) published by the bench on ``$hw/events/device/.../twin/update``, through
  EventBus to DeviceTwin (``mqtt_reports_per_s``, ``mqtt_to_status_ms`` from publish to status,
  ``mqtt_cpu_cores``); ``ratio`` is DMI's rate over it (goal: at least 0.8).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass

from cloud.kube import Kube
from edge.mappers.modbus.client import RegisterClient, RequestRefused, Unreachable
from edge.mappers.modbus.config import parse_protocol, parse_visitor
from edgehive.bench.harness import BenchError, percentiles, process, progress_printer, wait_status, wait_until
from edgehive.bench.mapperfleet import (
    GROUP,
    MODBUS_MODEL,
    MODBUS_PREFIX,
    MQTT_MODEL,
    MQTT_PREFIX,
    VERSION,
    Fleet,
    StatusTally,
    cores,
    latencies,
    rate,
    ratio,
)
from edgehive.bench.modbussim import start_modbus_sim
from edgehive.bench.procfs import Window
from edgehive.bench.system import NAMESPACE, NODE, System, start_system
from runtime import hoptrace
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics

WARMUP_S = 180.0
"""How long every device may take to show its first values (membership, the mapper's registration)."""


@dataclass(frozen=True)
class MapperReport:
    broker: str
    devices: int
    properties: int
    collect_cycle_ms: int
    seconds: float
    offered_per_s: float
    dmi_reports_per_s: float
    mqtt_reports_per_s: float
    ratio: float
    register_to_status_ms: dict[str, float]
    changes: int
    changes_seen: int
    mqtt_to_status_ms: dict[str, float]
    dmi_cpu_cores: dict[str, float]
    mqtt_cpu_cores: dict[str, float]

    @property
    def p50_goal_ms(self) -> float:
        return self.collect_cycle_ms + 500.0


def bench_mapper(devices: int = 100, properties: int = 10, collect_cycle_ms: int = 1000, seconds: float = 30.0,
                 change_rate: float = 5.0, broker: str = "amqtt", progress: bool = True) -> MapperReport:
    try:
        fleet = Fleet(devices, properties, collect_cycle_ms)
    except ValueError as exc:
        raise BenchError(f"bench mapper: {exc}") from None
    if seconds < 2 * collect_cycle_ms / 1000:
        raise BenchError(f"bench mapper: seconds must be at least two collect cycles, not {seconds}")
    if not 0 < change_rate <= 100:
        raise BenchError(f"bench mapper: change_rate must be above 0 and at most 100 per second, not {change_rate}")
    if seconds * change_rate >= 65535:
        raise BenchError("bench mapper: seconds x change_rate must stay under 65535 (one register's values)")
    say = progress_printer("mapper", progress)
    with ExitStack() as stack:
        system = start_system(stack, broker, say)
        say("starting the node's DMI process and the Modbus server")
        dmi_pid = _start_dmi(stack, system)
        port, server_pid = start_modbus_sim(stack, system.work, fleet.registers)
        tally = StatusTally()
        _create(system.kube, fleet, port)
        stack.enter_context(_watch(system.kube, tally))
        twin_pid, eventbus_pid = _edge_pid(system, "edge.devicetwin"), _edge_pid(system, "edge.eventbus")

        say(f"baseline: {fleet.offered_per_s:.0f} readings/s published on $hw/events for {devices} devices")
        mqtt = _mqtt_phase(system.edge_url, fleet, seconds, tally, {"devicetwin": [twin_pid],
                                                                      "eventbus": [eventbus_pid]}, say)

        say(f"DMI: starting the Modbus mapper for {devices} devices x {properties} properties")
        mapper_pid = _start_mapper(stack, system)
        pids = {"mapper": [mapper_pid], "dmi": [dmi_pid], "devicetwin": [twin_pid], "modbus_server": [server_pid]}
        dmi = _dmi_phase(fleet, port, seconds, change_rate, tally, pids, say)
    return MapperReport(
        broker=broker, devices=devices, properties=properties, collect_cycle_ms=collect_cycle_ms, seconds=seconds,
        offered_per_s=fleet.offered_per_s, dmi_reports_per_s=dmi.per_s, mqtt_reports_per_s=mqtt.per_s,
        ratio=ratio(dmi.per_s, mqtt.per_s), register_to_status_ms=_pct(dmi.latencies), changes=dmi.sent,
        changes_seen=len(dmi.latencies), mqtt_to_status_ms=_pct(mqtt.latencies), dmi_cpu_cores=dmi.cpu,
        mqtt_cpu_cores=mqtt.cpu)


@dataclass(frozen=True)
class _Phase:
    per_s: float
    latencies: list[int]
    sent: int
    cpu: dict[str, float]


def _pct(values: list[int]) -> dict[str, float]:
    return percentiles(values) if values else {"p50": -1.0, "p99": -1.0}


# -- the parts ---------------------------------------------------------------------------------------------------

def _start_dmi(stack: ExitStack, system: System) -> int:
    """The node's DMI process, as ``edgehive up`` runs it (start_system does not: only this bench needs it)."""
    work = system.work
    proc = stack.enter_context(process([sys.executable, "-m", "edge.dmi", "--node", NODE, "--broker",
                                        str(system.edge_url), "--socket", str(work / "dmi.sock"),
                                        "--mappers-file", str(work / "dmi-mappers.json")], work / "dmi.log"))
    wait_status(system.edge_url, ("dmi",))
    return proc.pid


def _start_mapper(stack: ExitStack, system: System) -> int:
    work = system.work
    proc = stack.enter_context(process([sys.executable, "-m", "edgehive", "mapper", "modbus", "--dmi-socket",
                                        str(work / "dmi.sock"), "--socket", str(work / "modbus.sock"),
                                        "--register-timeout-s", "30"], work / "mapper-modbus.log"))
    return proc.pid


def _edge_pid(system: System, module: str) -> int:
    for proc in system.edge.procs:
        if isinstance(proc.args, list) and module in proc.args:
            return proc.pid
    raise BenchError(f"no {module} process among the node's edge components")


def _create(kube: Kube, fleet: Fleet, port: int) -> None:
    custom = kube.custom

    def model_created() -> bool:
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "devicemodels",
                                                   fleet.model(MODBUS_MODEL, "modbus"))
        except Exception:  # the CRDs are not served yet (DeviceController installs them)
            return False
        return True

    wait_until(model_created, 60, "the devices.kubeedge.io CRDs (DeviceController installs them)")
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "devicemodels", fleet.model(MQTT_MODEL, None))
    for i in range(fleet.devices):
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "devices", fleet.modbus_device(i, NODE, port))
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "devices", fleet.mqtt_device(i, NODE))


@contextmanager
def _watch(kube: Kube, tally: StatusTally) -> Iterator[None]:
    """Every Device event fed to ``tally`` with its arrival time, on a thread of its own, until the block ends."""
    stop = threading.Event()

    def run() -> None:
        version = ""
        while not stop.is_set():
            try:
                if not version:
                    items, version = kube.list("device")
                    now = time.perf_counter_ns()
                    for item in items:
                        tally.feed(item, now)
                for kind, obj in kube.watch("device", version, timeout_s=30):
                    now = time.perf_counter_ns()
                    version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                    if kind in ("ADDED", "MODIFIED"):
                        tally.feed(obj, now)
                    if stop.is_set():
                        return
            except Exception:  # too old (410), a broken connection, or the client closed under it at the end
                if stop.is_set():
                    return
                version = ""  # list again
                stop.wait(0.2)

    thread = threading.Thread(target=run, name="device-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()  # the thread ends at its next event or the watch's timeout; it is a daemon either way


# -- the baseline: readings published on $hw/events --------------------------------------------------------------

def _paced(fleet: Fleet, stop: threading.Event, each: Callable[[int, int], None]) -> None:
    """``each(device, round)`` for every device once per collect cycle, the devices spread over the cycle."""
    step = fleet.collect_cycle_ms / 1000 / fleet.devices
    start = time.monotonic()
    slot = 0
    while not stop.is_set():
        delay = start + slot * step - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        each(slot % fleet.devices, slot // fleet.devices)
        slot += 1


def _mqtt_phase(url: BrokerUrl, fleet: Fleet, seconds: float, tally: StatusTally, pids: dict[str, list[int]],
                say: Callable[[str], None]) -> _Phase:
    connection = Connection(ConnectionSettings(url=url, client_id="bench-mapper-mqtt", window=200),
                            name="bench-mapper-mqtt")
    connection.start()
    if not connection.wait_connected(20):
        connection.close(drain_timeout=0)
        raise BenchError("the baseline's client could not connect to the edge broker")
    sent: dict[tuple[str, str, str], int] = {}
    recording = threading.Event()

    def publish(device: int, round_: int) -> None:
        name = f"{MQTT_PREFIX}{device}"
        values = {fleet.prop(j): str(round_ * fleet.properties + j) for j in range(fleet.properties)}
        payload = json.dumps({"event_id": f"{name}-{round_}", "timestamp": int(time.time() * 1000), "twin": {
            p: {"actual": {"value": v}, "metadata": {"type": "int"}} for p, v in values.items()}}).encode()
        at = time.perf_counter_ns()
        connection.publish(topics.device(NAMESPACE, name, "twin/update"), payload)
        if recording.is_set():
            for prop, value in values.items():
                sent[(name, prop, value)] = at

    stop = threading.Event()
    publisher = threading.Thread(target=_paced, args=(fleet, stop, publish), name="mqtt-readings", daemon=True)
    publisher.start()
    try:
        _warm_up(tally, MQTT_PREFIX, fleet, say)
        per_s, cpu = _window(tally, MQTT_PREFIX, seconds, pids, recording)
    finally:
        stop.set()
        publisher.join(timeout=10)
        connection.close(drain_timeout=1)
    _wait_last(sent, tally, 30, say)
    _trace_ends(sent, tally, "mqtt_published")
    return _Phase(per_s, latencies(sent, tally), len(sent), cpu)


# -- DMI: the Modbus mapper ----------------------------------------------------------------------------------------

def _dmi_phase(fleet: Fleet, port: int, seconds: float, change_rate: float, tally: StatusTally,
               pids: dict[str, list[int]], say: Callable[[str], None]) -> _Phase:
    _warm_up(tally, MODBUS_PREFIX, fleet, say)
    client = RegisterClient(parse_protocol({"ip": "127.0.0.1", "port": port, "slaveID": 1}))
    try:
        client.connect()
    except Unreachable as exc:
        raise BenchError(f"the bench cannot reach its own Modbus server: {exc}") from None
    sent: dict[tuple[str, str, str], int] = {}
    stop = threading.Event()
    failed: list[str] = []

    def change() -> None:
        """Change ``change_rate`` registers per second, each to a value no register held before."""
        start = time.monotonic()
        k = 0
        while not stop.is_set():
            delay = start + k / change_rate - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            device, prop = k % fleet.devices, (k // fleet.devices) % fleet.properties
            value = k + 1
            try:
                client.write_words(parse_visitor(fleet.visitor(device, prop), "INT"), [value])
            except (Unreachable, RequestRefused) as exc:
                failed.append(str(exc))
                return
            sent[(f"{MODBUS_PREFIX}{device}", fleet.prop(prop), str(value))] = time.perf_counter_ns()
            k += 1

    changer = threading.Thread(target=change, name="register-changes", daemon=True)
    say(f"measuring for {seconds:.0f} s: {change_rate:g} register changes/s")
    try:
        per_s, cpu = _window(tally, MODBUS_PREFIX, seconds, pids, None, changer)
        stop.set()
        changer.join(timeout=10)
        if failed:
            raise BenchError(f"changing a register failed: {failed[0]}")
        _wait_last(sent, tally, 10 + 2 * fleet.collect_cycle_ms / 1000, say)  # it waits up to a cycle to be read
    finally:
        stop.set()
        client.close()
    _trace_ends(sent, tally, "register_written")
    return _Phase(per_s, latencies(sent, tally), len(sent), cpu)


# -- shared by both phases ---------------------------------------------------------------------------------------

def _trace_ends(sent: dict[tuple[str, str, str], int], tally: StatusTally, start: str) -> None:
    """With hops traced (runtime.hoptrace, edgehive/bench/hops.py): each value's two ends, on the wall clock that
    the components' hops use."""
    if not hoptrace.enabled():
        return
    to_wall = time.time_ns() - time.perf_counter_ns()
    for (device, prop, value), at in sent.items():
        hoptrace.hop(start, f"{NAMESPACE}/{device}/{prop}={value}", at + to_wall)
        if (seen := tally.seen(device, prop, value)) is not None:
            hoptrace.hop("status_seen", f"{NAMESPACE}/{device}/{prop}={value}", seen + to_wall)


def _warm_up(tally: StatusTally, prefix: str, fleet: Fleet, say: Callable[[str], None]) -> None:
    total = fleet.devices * fleet.properties
    wait_until(lambda: tally.complete(prefix, fleet.devices, fleet.properties), WARMUP_S,
               f"every {prefix}N device to show its values in the Device status",
               progress=lambda: f"{tally.count(prefix)} values in the status so far, {total} properties", say=say)


def _wait_last(sent: dict[tuple[str, str, str], int], tally: StatusTally, timeout: float,
               say: Callable[[str], None]) -> None:
    """Until the value sent last is in the status, so the latencies take in the whole window; one that never
    arrives is said, and the report's counts show how many did."""
    last = max(sent, key=lambda k: sent[k], default=None)
    if last is None:
        return
    try:
        wait_until(lambda: tally.seen(*last) is not None, timeout, "the last value sent in the Device status")
    except BenchError:
        say(f"{last[2]} of {last[0]}/{last[1]} never reached the Device status; reporting the values that did")


def _window(tally: StatusTally, prefix: str, seconds: float, pids: dict[str, list[int]],
            recording: threading.Event | None,
            worker: threading.Thread | None = None) -> tuple[float, dict[str, float]]:
    """Values per second reaching the status and each process's cores over ``seconds``; ``recording`` is set and
    ``worker`` started for that time."""
    window = Window(pids).start()
    before = tally.count(prefix)
    if recording is not None:
        recording.set()
    if worker is not None:
        worker.start()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))  # the window's length, not a wait for a condition
    if recording is not None:
        recording.clear()
    took, cpu, machine = window.stop()
    per_s = rate(before, tally.count(prefix), took)
    return per_s, {**cores(cpu, took), "machine": machine}


# -- the report --------------------------------------------------------------------------------------------------

def print_report(report: MapperReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(report)))
        return
    r = report
    print(f"mapper benchmark: {r.devices} Modbus devices x {r.properties} properties, collectCycle "
          f"{r.collect_cycle_ms} ms ({r.offered_per_s:.0f} readings/s offered), {r.seconds:.0f} s, {r.broker} brokers")
    print(f"  DMI to the Device status       {r.dmi_reports_per_s:>8.1f} values/s; $hw/events baseline "
          f"{r.mqtt_reports_per_s:.1f}/s, ratio {r.ratio:.2f} (goal >= 0.8)")
    print(f"  register -> Device status      p50 {r.register_to_status_ms['p50']:.0f} ms, p99 "
          f"{r.register_to_status_ms['p99']:.0f} ms ({r.changes_seen} of {r.changes} changes seen; goal p50 <= "
          f"{r.p50_goal_ms:.0f} ms)")
    print(f"  baseline publish -> status     p50 {r.mqtt_to_status_ms['p50']:.0f} ms, p99 "
          f"{r.mqtt_to_status_ms['p99']:.0f} ms")
    print("  CPU cores, DMI phase           " + ", ".join(f"{k} {v:.2f}" for k, v in r.dmi_cpu_cores.items()))
    print("  CPU cores, baseline            " + ", ".join(f"{k} {v:.2f}" for k, v in r.mqtt_cpu_cores.items()))
