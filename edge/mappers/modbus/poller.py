"""One device's loop: connect, read each property at its collectCycle, report at its reportCycle, write desired
values, and say online/offline as the Modbus server goes and comes back.

One thread per device, because one Modbus TCP connection serves one request at a time (KubeEdge's mapper also
holds one client per server behind a lock). The thread connects at once, then sleeps until the next property
is due or until a desired value arrives; the first read of a device comes at its phase of the cycle
(edge/mappers/modbus/schedule.py), so that many devices do not all read and report in the same instant. A
failed connection or request makes the device offline: the connection is closed and reopened after a jittered
backoff (runtime.backoff) that grows while the server stays away; once it answers, the device is online again
and every property is read at once. Nothing a server does stops the thread; only ``stop`` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.mappers.modbus.blocks import Block, blocks
from edge.mappers.modbus.client import RegisterClient, RequestRefused, Unreachable
from edge.mappers.modbus.codec import EncodeError, decode_bits, decode_words, encode_bits, encode_words
from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.schedule import initial_grid
from edge.mappers.modbus.spec import (
    Collected,
    DeviceReport,
    DeviceSpec,
    DeviceState,
    MapperEvent,
    PropertyError,
    PropertySpec,
    Reading,
    StateChange,
)
from runtime import hoptrace
from runtime.backoff import Backoff

log = logging.getLogger(__name__)

Emit = Callable[[MapperEvent], None]


def default_backoff() -> Backoff:
    """Reconnects from half a second up to 30 s apart, like the node's own link."""
    return Backoff(initial=0.5, maximum=30.0)


@dataclass(frozen=True)
class Write:
    """A desired value already encoded for its registers (so that a bad value is refused before queueing)."""

    property: str
    value: str
    words: list[int] | None = None
    bits: list[bool] | None = None


def encode_desired(prop: PropertySpec, value: str) -> Write:
    """Check that ``value`` may be written to ``prop`` and encode it; ModbusConfigError or EncodeError if not."""
    if not prop.writable:
        raise ModbusConfigError(f"properties[{prop.name}]: the device model's accessMode is ReadOnly")
    if not prop.visitor.register.writable:
        raise ModbusConfigError(
            f"properties[{prop.name}].visitors.configData.register: {prop.visitor.register.value} cannot be written")
    try:
        if prop.visitor.register.is_bits:
            return Write(prop.name, value, bits=encode_bits(prop.visitor, value))
        return Write(prop.name, value, words=encode_words(prop.visitor, value))
    except EncodeError as exc:
        raise EncodeError(f"properties[{prop.name}]: {exc}") from None


class DevicePoller:
    def __init__(self, spec: DeviceSpec, emit: Emit, backoff: Backoff | None = None) -> None:
        self.spec = spec
        self._listener = emit
        self._backoff = backoff or default_backoff()
        self._client = RegisterClient(spec.protocol)
        self._state: DeviceState | None = None
        self._connected = False
        self._lock = threading.Lock()
        self._pending: dict[str, Write] = {}
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"modbus-{spec.namespace}/{spec.name}", daemon=True)
        self._next_collect, self._next_report = initial_grid(spec, time.monotonic())
        self._ever_connected = False
        self._read_back: set[str] = set()
        """Properties written in this step: read and reported in it whatever their cycles say."""
        self._answered = False
        """Whether the server answered a request in this step (a read, or a write, refused or not)."""
        self._fresh: dict[str, Reading] = {}
        self._alone: set[str] = set()
        """Properties read one request each: a request reading them with their neighbours was refused."""
        self._traced: dict[str, str] = {}
        """The value each property had at its last read, when hops are traced (runtime.hoptrace)."""
        self._failing: dict[str, str] = {}
        """Properties whose last read was refused, with the reason: told once, not at every cycle."""
        """Values collected since their property was last reported: a report never repeats a stale value."""

    @property
    def state(self) -> DeviceState | None:
        """None until the first connection attempt has ended."""
        return self._state

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    def desire(self, write: Write) -> None:
        """Queue a write (a newer value for the same property replaces one not yet written)."""
        with self._lock:
            self._pending[write.property] = write
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                delay = self._step()
            except Unreachable as exc:
                self._client.close()
                self._connected = False
                self._set_state(DeviceState.OFFLINE, str(exc))
                delay = self._backoff.next()
            except Exception:  # a bug of ours must not end the device's polling for good
                log.exception("device %s/%s: polling failed", self.spec.namespace, self.spec.name)
                self._client.close()
                self._connected = False
                delay = self._backoff.next()
            self._wake.wait(max(0.0, delay))
            self._wake.clear()

    def _step(self) -> float:
        """Do what is due; return how long until something else is."""
        if not self._connected:
            self._client.connect()
            self._connected = True
            now = time.monotonic()
            if self._ever_connected:
                # Read (and report) everything as soon as the server is back, then keep to the cycles from there
                # (the jittered backoff spreads devices that come back together).
                self._next_collect = dict.fromkeys(self._next_collect, now)
                self._next_report = dict.fromkeys(self._next_report, now)
            self._ever_connected = True
        self._answered = False
        self._write_pending()
        now = time.monotonic()
        reads: list[PropertySpec] = []
        for prop in self.spec.properties:
            is_due = self._next_collect[prop.name] <= now
            if is_due or prop.name in self._read_back:
                reads.append(prop)
            if is_due:
                self._next_collect[prop.name] = _next(self._next_collect[prop.name], prop.collect_cycle_ms, now)
        self._collect_all(reads)
        if self._stopped.is_set():
            return 0.0
        self._report(time.monotonic())
        self._read_back.clear()
        # Online once the server answered this step's requests (a connection alone proves little: a hung server
        # accepts one and never answers); the backoff starts small again only then, so a server that accepts and
        # then fails every request is retried ever more slowly. A step with nothing due yet (the first, before
        # the device's phase) says nothing either way.
        if self._answered:
            self._backoff.reset()
            self._set_state(DeviceState.ONLINE, f"{self._client.address} answers")
        due = min([*self._next_collect.values(), *self._next_report.values()], default=now + 1.0)
        return due - time.monotonic()

    def _collect_all(self, props: list[PropertySpec]) -> None:
        """Read ``props``; those whose registers touch in one request each (blocks.py)."""
        alone = [p for p in props if p.name in self._alone]
        for block in blocks(p for p in props if p.name not in self._alone):
            if len(block.properties) == 1:
                alone.append(block.properties[0])
                continue
            if self._stopped.is_set():
                return
            try:
                values = self._read_block(block)
            except RequestRefused as exc:
                # One of them may be at a bad address: each is read alone, now and from now on, so that each
                # keeps its own answer (and the others their values).
                self._answered = True
                log.info("device %s/%s: reading %s in one request was refused (%s); reading them one by one",
                         self.spec.namespace, self.spec.name, ", ".join(p.name for p in block.properties), exc)
                self._alone.update(p.name for p in block.properties)
                alone.extend(block.properties)
                continue
            self._answered = True
            for prop, value in values:
                self._took(prop, value)
        for prop in alone:
            if self._stopped.is_set():
                return
            self._collect(prop)

    def _read_block(self, block: Block) -> list[tuple[PropertySpec, str]]:
        """Each property of ``block`` with its value, from one request."""
        if block.register.is_bits:
            bits = self._client.read_bits(block.register, block.start, block.count)
            return [(p, decode_bits(p.visitor, block.part(p, bits))) for p in block.properties]
        words = self._client.read_words(block.register, block.start, block.count)
        return [(p, decode_words(p.visitor, block.part(p, words))) for p in block.properties]

    def _collect(self, prop: PropertySpec) -> None:
        try:
            value = self._client.read(prop.visitor)
        except RequestRefused as exc:
            self._answered = True
            if self._failing.get(prop.name) != str(exc):
                self._failing[prop.name] = str(exc)
                self._emit(PropertyError(self.spec.namespace, self.spec.name, prop.name, str(exc)))
            return
        self._answered = True
        self._took(prop, value)

    def _took(self, prop: PropertySpec, value: str) -> None:
        """A value read: kept for the next report (and pushed, if the property has a pushMethod)."""
        self._failing.pop(prop.name, None)
        reading = Reading(prop.name, value, prop.visitor.data_type.value, int(time.time() * 1000))
        if hoptrace.enabled() and self._traced.get(prop.name) != value:
            self._traced[prop.name] = value
            hoptrace.hop("mapper_read", f"{self.spec.namespace}/{self.spec.name}/{prop.name}={value}")
        self._fresh[prop.name] = reading
        if prop.push is not None:  # every collected value, as KubeEdge's mapper pushes them
            self._emit(Collected(self.spec.namespace, self.spec.name, prop.push, reading))

    def _report(self, now: float) -> None:
        readings = []
        for prop in self.spec.properties:
            due = self._next_report[prop.name] <= now
            if due:
                self._next_report[prop.name] = _next(self._next_report[prop.name], prop.report_cycle_ms, now)
            if due or prop.name in self._read_back:
                reading = self._fresh.pop(prop.name, None)
                if reading is not None:
                    readings.append(reading)
        if readings:
            self._emit(DeviceReport(self.spec.namespace, self.spec.name, tuple(readings)))

    def _write_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                name, write = next(iter(self._pending.items()))
            prop = self.spec.property(name)
            try:
                if write.bits is not None:
                    self._client.write_bits(prop.visitor, write.bits)
                elif write.words is not None:
                    self._client.write_words(prop.visitor, write.words)
            except RequestRefused as exc:
                self._emit(PropertyError(self.spec.namespace, self.spec.name, name, f"writing {write.value!r}: {exc}"))
            self._answered = True
            # Unreachable leaves the write queued: it is made once the server is back.
            with self._lock:
                if self._pending.get(name) is write:
                    del self._pending[name]
            # Read it back and report it in this step, not a cycle later; its cycles keep their phase, so that
            # it is read and reported with the device's other properties again from the next cycle on.
            self._read_back.add(name)

    def _emit(self, event: MapperEvent) -> None:
        try:
            self._listener(event)
        except Exception:  # the listener's failure is its own; the device goes on being polled
            log.exception("device %s/%s: the listener failed on %s", self.spec.namespace, self.spec.name, event)

    def _set_state(self, state: DeviceState, reason: str) -> None:
        if state is self._state:
            return
        self._state = state
        log.info("device %s/%s is %s: %s", self.spec.namespace, self.spec.name, state.value, reason)
        self._emit(StateChange(self.spec.namespace, self.spec.name, state, reason))


def _next(previous: float, cycle_ms: int, now: float) -> float:
    """The next due time on the cycle's grid; cycles missed while busy or offline are skipped, not caught up."""
    cycle = cycle_ms / 1000
    due = previous + cycle
    if due <= now:
        due = now + cycle
    return due
