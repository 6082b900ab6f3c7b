"""``edgehive bench twin``: device updates through EventBus and DeviceTwin, against an echo baseline.

(a) 10 devices with 5 properties each publish twin/update messages flat out; an
update counts once its result has been published back (after DeviceTwin's commit).
The devices are C clients (mosquitto_pub and mosquitto_sub, edgehive/bench/cclients.py) in
both phases, so that the load generator leaves the machine to what it measures.
The baseline is the same publishes answered by a bare echo client on the same
broker, on topics of their own (ECHO_PREFIX) while the edge components run idle; baseline
and edge take turns, ROUNDS times, and the ratio is the median round's. The echo puts on
the broker what EventBus puts there for an update, as KubeEdge's does: a result and a
document, each at QoS 1, so that the ratio is what EventBus and DeviceTwin cost, not
the broker's work for messages the echo would skip (on amqtt, the bottleneck, that
alone held the ratio near 0.67: 9 packets an update through the broker against 6).
The lighter echo of earlier runs (the result alone, at QoS 0) is measured too, as
``result_only_baseline_per_s``. (b) At 100 updates/s, the time from a device's publish
to the value in the Device status in the API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgehive.bench import cclients
from edgehive.bench.harness import BenchError, bench_workdir, percentiles, progress_printer, wait_until
from edgehive.bench.procfs import Window, descendants
from edgehive.bench.system import NAMESPACE, NODE, System, start_system
from edgehive.bench.twinecho import DEVICE_PREFIX
from edgehive.deathsig import die_with_parent
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics

DEVICES = 10
PROPERTIES = 5
RATE = 100
SETTLED_CORES = 0.15
SETTLE_WINDOW_S = 1.0
SETTLE_TIMEOUT_S = 30.0
ROUNDS = 3
"""Rounds of a baseline run and an edge run, one after the other: the ratio is the median round's. A lone pair,
the baseline measured before the edge components started, spread from 0.65 to 0.92 on mosquitto in runs of the
same code: the two were measured half a minute apart, on a machine whose other work came and went."""
WARM_UP_SHARE = 5
"""Before the rounds, a fifth of a run's updates through each, untimed."""
ECHO_PREFIX = "$hw/events/bench-echo"
"""The echo's devices publish here, not on KubeEdge's device topics, so that EventBus (subscribed to those) sees
none of them and the echo can be measured while the edge components run, between the edge's own runs."""
UPDATES = 20_000
"""Per measurement. 5,000 took 1.5 s on mosquitto, so start-up (DeviceTwin's first reads of its store, the
interpreter specialising the hot code) weighed in it, and runs of the same code spread from 0.65 to 0.72."""


@dataclass
class TwinReport:
    broker: str
    updates: int
    edge_updates_per_s: float
    baseline_per_s: float
    ratio: float
    to_apiserver_ms: dict[str, float]
    result_only_baseline_per_s: float = 0.0
    """Against the echo of earlier runs (an empty result at QoS 0): lighter broker traffic than EventBus's."""
    result_only_ratio: float = 0.0
    rounds: list[tuple[float, float]] = field(default_factory=list)
    """Each round's (baseline, edge) updates/s, in the order measured."""


def _update(event: str, values: dict[str, str]) -> bytes:
    return json.dumps({"event_id": event, "timestamp": int(time.time() * 1000), "twin": {
        k: {"actual": {"value": v}, "metadata": {"type": "float"}} for k, v in values.items()}}).encode()


def _nth_update(i: int) -> tuple[str, bytes]:
    """The i-th update of a run: its device (round robin over DEVICES) and payload (every property new)."""
    return f"dev-{i % DEVICES}", _update(f"u{i}", {f"p{j}": f"{i}.{j}" for j in range(PROPERTIES)})


class _Devices:
    """One MQTT connection playing every device: publishes updates, counts the results."""

    def __init__(self, url: BrokerUrl, name: str) -> None:
        self.results = 0
        self.target = 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.connection = Connection(ConnectionSettings(url=url, client_id=name, window=200), name=name)
        self.connection.subscribe(f"$hw/events/device/{NAMESPACE}/+/twin/update/result", qos=0)
        self.connection.on_message(self._on_result)
        self.connection.start()
        if not self.connection.wait_connected(20):
            raise BenchError("the device client could not connect to the edge broker")

    def _on_result(self, incoming: Incoming) -> None:
        incoming.ack()
        with self._lock:
            self.results += 1
            if self.results >= self.target:
                self.done.set()

    def run(self, count: int) -> float:
        """Publish ``count`` updates round robin over the devices; updates/s until the last result."""
        with self._lock:
            self.results, self.target = 0, count
            self.done.clear()
        start = time.perf_counter()
        for i in range(count):
            device, payload = _nth_update(i)
            self.connection.publish(topics.device(NAMESPACE, device, "twin/update"), payload)
        if not self.done.wait(120):
            raise BenchError(f"bench twin: {self.results} of {count} results in 120 s")
        return count / (time.perf_counter() - start)

    def close(self) -> None:
        self.connection.close(drain_timeout=1)


class _LoadGenerator:
    """The devices, flat out, as C clients (edgehive/bench/cclients.py): one ``mosquitto_pub`` per device
    publishes its updates at QoS 1, one ``mosquitto_sub`` counts the results. The Python client above took
    0.4-0.6 of the machine's two cores in both phases of the measurement, shared with what it measured."""

    def __init__(self, url: BrokerUrl, work: Path) -> None:
        cclients.require_clients()
        self.work = work
        self.env = cclients.client_options(work, url)

    def run(self, count: int, name: str, prefix: str = DEVICE_PREFIX) -> float:
        """Publish ``count`` updates round robin over the devices (as _Devices.run) on their topics under
        ``prefix``; updates/s until the last result."""
        lines: list[list[bytes]] = [[] for _ in range(DEVICES)]
        for i in range(count):
            lines[i % DEVICES].append(_nth_update(i)[1] + b"\n")
        results = cclients.Subscriber(self.env, self.work, f"{prefix}/{NAMESPACE}/+/twin/update/result", count,
                                      f"{name}-results")
        try:
            publishers = cclients.Publishers(self.env, self.work,
                                             [f"{prefix}/{NAMESPACE}/dev-{k}/twin/update" for k in range(DEVICES)], 1,
                                             f"{name}-devices")
            try:
                began = publishers.publish([b"".join(chunk) for chunk in lines])
                if not results.wait(120):
                    raise BenchError(f"bench twin: {results.received()} of {count} results in 120 s "
                                     f"(see {self.work}/{name}-*.log)")
                return count / (time.perf_counter() - began)
            finally:
                publishers.close()
        finally:
            results.close()


class _EchoProcess:
    """The echo (edgehive/bench/twinecho.py) in a process of its own, as EventBus and DeviceTwin are: in the
    devices' process, its Python would share their interpreter lock and cap the baseline instead of the broker."""

    def __init__(self, url: BrokerUrl, *, like_eventbus: bool, prefix: str) -> None:
        argv = [sys.executable, "-m", "edgehive.bench.twinecho", "--url", url.with_password(), "--namespace", NAMESPACE,
                "--prefix", prefix]
        if not like_eventbus:
            argv.append("--result-only")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()  # the echo says so once connected and subscribed, or exits
        if ready.strip() != "ready":
            self.close()
            raise BenchError(f"the echo client did not start (exit {self.proc.returncode})")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the echo's signal to stop
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _model() -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel", "metadata": {"name": "bench"},
            "spec": {"properties": [{"name": f"p{j}", "type": "FLOAT"} for j in range(PROPERTIES)]}}


def _device(name: str) -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "metadata": {"name": name},
            "spec": {"deviceModelRef": {"name": "bench"}, "nodeName": NODE,
                     "properties": [{"name": f"p{j}"} for j in range(PROPERTIES)]}}


def bench_twin(updates: int = UPDATES, broker: str = "amqtt", progress: bool = True,
               rounds: int = ROUNDS) -> TwinReport:
    say = progress_printer("twin", progress)
    with ExitStack() as stack:
        clients = bench_workdir(stack, "ehbench-twin-clients-")
        system = start_system(stack, broker, say)
        custom = system.kube.custom
        wait_until(lambda: _crds_established(system.kube), 60, "the devices.kubeedge.io CRDs")
        group, version = "devices.kubeedge.io", "v1beta1"
        wait_until(lambda: bool(custom.create_namespaced_custom_object(group, version, NAMESPACE, "devicemodels",
                                                                  _model())), 30, "the DeviceModel")
        for i in range(DEVICES):
            custom.create_namespaced_custom_object(group, version, NAMESPACE, "devices", _device(f"dev-{i}"))
        say("waiting for the devices to reach the node")
        checker = _Devices(system.edge_url, "bench-devices-check")
        try:
            wait_until(lambda: _all_members(checker), 60, "the devices to become members of the node")
        finally:
            # Gone before the measured runs: subscribed to the results, it took each of them in Python (0.13 of
            # a core) and the broker one more delivery per update, in the edge's runs only.
            checker.close()
        load = _LoadGenerator(system.edge_url, clients)

        def measured(what: str, name: str, prefix: str = DEVICE_PREFIX) -> float:
            """One run, from a quiet machine: what the previous run left (the echo's or EventBus's last
            documents, DeviceTwin's reports on their way to the API server) slowed the run after it, so each
            baseline after an edge run, and no edge run."""
            settled_after = wait_settled()
            say(f"{what} (settled in {settled_after:.1f} s)" if settled_after is not None else
                f"{what} (the system still used {SETTLED_CORES} cores or more after {SETTLE_TIMEOUT_S:.0f} s)")
            return load.run(updates, name, prefix)

        pairs: list[tuple[float, float]] = []
        echo = _EchoProcess(system.edge_url, like_eventbus=True, prefix=ECHO_PREFIX)
        try:
            # Untimed: the first run of each went slower than the rest (DeviceTwin's store file growing, code
            # not yet run in each process), and the first edge run always came out the lowest.
            say(f"warming up: {updates // WARM_UP_SHARE} updates through the echo, then through the edge")
            load.run(updates // WARM_UP_SHARE, "warm-up-baseline", ECHO_PREFIX)
            load.run(updates // WARM_UP_SHARE, "warm-up-edge")
            for round_ in range(1, rounds + 1):
                baseline = measured(f"round {round_} of {rounds}, baseline: {updates} updates answered by an echo "
                                    "client (a result and a document at QoS 1, as EventBus)", f"baseline-{round_}",
                                    ECHO_PREFIX)
                edge = measured(f"round {round_} of {rounds}, edge: {updates} updates through EventBus and "
                                "DeviceTwin", f"edge-{round_}")
                pairs.append((baseline, edge))
        finally:
            echo.close()
        echo = _EchoProcess(system.edge_url, like_eventbus=False, prefix=ECHO_PREFIX)
        try:
            result_only = measured(f"baseline: {updates} updates answered by an echo client (an empty result at "
                                   "QoS 0)", "baseline-result-only", ECHO_PREFIX)
        finally:
            echo.close()

        say(f"to the API server: updates at {RATE}/s, watching the Device status")
        devices = _Devices(system.edge_url, "bench-devices")
        stack.callback(devices.close)
        latencies = _to_apiserver(system, devices)
    ratio, (baseline_rate, edge_rate) = _median_round(pairs)
    return TwinReport(broker=broker, updates=updates, edge_updates_per_s=round(edge_rate, 1),
                      baseline_per_s=round(baseline_rate, 1), ratio=round(ratio, 3),
                      to_apiserver_ms=percentiles(latencies), result_only_baseline_per_s=round(result_only, 1),
                      result_only_ratio=round(edge_rate / result_only, 3),
                      rounds=[(round(b, 1), round(e, 1)) for b, e in pairs])


def _median_round(pairs: list[tuple[float, float]]) -> tuple[float, tuple[float, float]]:
    """The round whose ratio (edge against its own baseline) is the median of the rounds', and that ratio (the
    lower middle one of an even number)."""
    ranked = sorted(pairs, key=lambda pair: pair[1] / pair[0])
    middle = ranked[(len(ranked) - 1) // 2]
    return middle[1] / middle[0], middle


def wait_settled() -> float | None:
    """Wait until the processes this benchmark started (the API server, the cloud and edge components, the echo)
    are idle, before each run: their start-up work (imports, the informers' first listings, DeviceController's
    CRDs: 0.5 of a core for several seconds), or what the run before left, would slow one run and not the other.
    Seconds waited, or None when they were still busy after SETTLE_TIMEOUT_S."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        window = Window({"system": descendants(os.getpid())}).start()
        time.sleep(SETTLE_WINDOW_S)  # the window measured, not a wait for an event
        seconds, cpu, _ = window.stop()
        if cpu["system"] / seconds < SETTLED_CORES:
            return time.monotonic() - started
    return None


def _crds_established(kube: Any) -> bool:
    try:
        crd = kube.extensions.read_custom_resource_definition("devices.devices.kubeedge.io")
    except Exception:
        return False
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def _all_members(devices: _Devices) -> bool:
    """Each device answers a twin/update with a result, not a 404."""
    try:
        devices.run(DEVICES)
    except BenchError:
        return False
    return True


def _to_apiserver(system: System, devices: _Devices, seconds: float = 5.0) -> list[int]:
    """Publish p0 values at RATE/s to dev-0; poll its status and time each value's first appearance."""
    sent: dict[str, int] = {}
    seen: dict[str, int] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            obj = system.kube.get_custom("device", NAMESPACE, "dev-0") or {}
            now = time.perf_counter_ns()
            for twin in (obj.get("status") or {}).get("twins") or []:
                if twin.get("propertyName") == "p0":
                    value = str((twin.get("reported") or {}).get("value"))
                    seen.setdefault(value, now)
            stop.wait(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    count = int(seconds * RATE)
    start = time.perf_counter_ns()
    for i in range(count):
        due = start + int(i * 1e9 / RATE)
        while (now := time.perf_counter_ns()) < due:
            time.sleep(min(0.001, (due - now) / 1e9))
        value = f"7{i}.5"
        sent[value] = time.perf_counter_ns()
        devices.connection.publish(topics.device(NAMESPACE, "dev-0", "twin/update"),
                                   _update(f"l{i}", {"p0": value}))
    last = f"7{count - 1}.5"
    wait_until(lambda: last in seen, 30, "the last value in the Device status")
    stop.set()
    poller.join(timeout=5)
    return [seen[v] - t for v, t in sent.items() if v in seen]


def print_report(report: TwinReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"broker": report.broker, "edge_updates_per_s": report.edge_updates_per_s,
                          "baseline_per_s": report.baseline_per_s, "ratio": report.ratio,
                          "to_apiserver_ms": report.to_apiserver_ms,
                          "result_only_baseline_per_s": report.result_only_baseline_per_s,
                          "result_only_ratio": report.result_only_ratio,
                          "rounds": [{"baseline_per_s": b, "edge_updates_per_s": e} for b, e in report.rounds]}))
        return
    print(f"twin benchmark, {report.updates} updates ({DEVICES} devices x {PROPERTIES} properties), "
          f"{report.broker} brokers")
    print(f"  edge: update -> commit -> result   {report.edge_updates_per_s:>8.0f}/s (goal >= 2000); "
          f"echo baseline {report.baseline_per_s:.0f}/s, ratio {report.ratio:.2f} (against a result-only echo "
          f"{report.result_only_baseline_per_s:.0f}/s, {report.result_only_ratio:.2f})")
    print("  rounds (baseline, edge /s): " + ", ".join(f"{b:.0f} {e:.0f}" for b, e in report.rounds)
          + " (the median round's ratio above)")
    print(f"  device -> Device status at {RATE}/s   p50 {report.to_apiserver_ms['p50']:.0f} ms, "
          f"p99 {report.to_apiserver_ms['p99']:.0f} ms (goal p50 <= 500 ms; only values the status showed)")
