"""The life of an edgehive process: settings, logging, the bus, health, and a clean stop.

Every component is a small class made from its settings and the bus it talks on, with
``start()`` (subscribe its handlers, start its threads) and ``close()``; ``run_component``
does the rest the same way for all of them:

- settings from flags, ``EDGEHIVE_*`` variables and a YAML file (runtime.settings);
- a retained status envelope on ``edgehive/status/<module>`` (a replica's on ``.../<module>/<replica>``),
  ``up`` while it runs, ``down`` when it stops or (through the MQTT will) when it dies;
- an answer to a ``hub``/``query`` on its inbox with its counters, so any
  component can be asked whether it is alive and what it has seen;
- SIGTERM or SIGINT: stop taking messages, finish the ones in hand, exit 0.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from runtime import logs, metrics, settings
from runtime.bus import Bus, BusSettings, ErrorRoute
from runtime.connection import ConnectionSettings, TlsSettings, Will
from runtime.healthfile import HealthFile
from runtime.processsettings import MetricsSettings
from runtime.url import BrokerUrl, describe
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, Send
from schemas.names import require_module_name, require_node_name

log = logging.getLogger(__name__)

STATUS_REPEAT_S = 10.0
"""How long after each connect the retained status "up" is published once more. A NATS cluster shares retained
messages among its members asynchronously: a component that subscribes on one member just as the status is
published on another can get it neither live nor as retained (seen: an EdgeController replica that never counted
a CloudHub replica up sent that replica's nodes' answers through the shared inbox, decoded by every replica). The
session announcements are repeated the same way (cloud/cloudhub/routing.py REPEAT_AFTER_S)."""


@dataclass(frozen=True)
class ComponentSettings(MetricsSettings):
    """Settings every bus component has; components extend this dataclass."""

    node: str = field(default="edge-1", metadata={"help": "the edge node this process serves or speaks for"})
    broker: str = field(default="mqtt://127.0.0.1:1884", metadata={
        "help": "broker URL, mqtt:// or mqtts://; a cluster's members as mqtt://HOST:PORT,HOST:PORT,..."})
    broker_ca: str | None = field(default=None, metadata={"help": "CA file for an mqtts:// broker"})
    broker_cert: str | None = field(default=None, metadata={"help": "client certificate for mqtts://"})
    broker_key: str | None = field(default=None, metadata={"help": "client key for mqtts://"})
    window: int = field(default=100, metadata={"help": "most unacknowledged publishes at once"})
    max_envelope_size: int = field(default=DEFAULT_MAX_SIZE, metadata={"help": "largest envelope accepted, bytes"})

    def __post_init__(self) -> None:
        super().__post_init__()
        require_node_name(self.node)
        BrokerUrl.parse_list(self.broker)
        if self.window < 1:
            raise ValueError(f"window must be at least 1, not {self.window}")

    def replica(self) -> str | None:
        """Which of several replicas of the component that run at once this process is (CloudHub's), or None:
        a replica's status goes on a topic of its own, so that the replicas' statuses and wills do not
        overwrite each other."""
        return None


class Component(Protocol):
    """Made with its bus (``make(settings, bus)``), so that no handler or thread ever sees a component without
    one; making it only builds, so that a unit test can make one on a stand-in bus and call its handlers."""

    def start(self) -> None:
        """Register handlers on the bus and start the component's threads; called once, before the bus connects."""

    def close(self) -> None:
        """Release what the component holds; called after the bus stopped delivering."""


S = TypeVar("S", bound=ComponentSettings)


class StopSignal:
    """Set by SIGTERM or SIGINT; what a process's main thread waits on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: str | None = None

    def install(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received = signal.Signals(signum).name
        self.event.set()

    def wait(self) -> str:
        while not self.event.wait(1.0):
            pass
        return self.received or "stop"


def status_envelope(module: str, node: str, status: ComponentStatus) -> Envelope:
    """The retained status a component publishes (and leaves as its will)."""
    return Envelope(node=node, src=module, group=Group.HUB, op=Op.UPDATE, body=status.as_body())


def bus_settings(module: str, side: topics.Side, s: ComponentSettings) -> BusSettings:
    urls = BrokerUrl.parse_list(s.broker)
    url = urls[0]
    tls = TlsSettings(s.broker_ca, s.broker_cert, s.broker_key) if url.tls else None
    last_word = ComponentStatus("down", os.getpid(), reason="connection lost", replica=s.replica())
    will = Will(topics.status(module, s.replica()), status_envelope(module, s.node, last_word).encode())
    return BusSettings(
        connection=ConnectionSettings(url=url, client_id=f"edgehive-{module}-{s.node}", clean_start=False,
                                      window=s.window, tls=tls, will=will, alternates=urls[1:]),
        module=module, side=side, node=s.node, max_size=s.max_envelope_size,
    )


class Health:
    """The component's retained status and its answer to status queries."""

    def __init__(self, bus: Bus, module: str, extra: Callable[[], dict[str, Any]] | None = None,
                 replica: str | None = None, *, repeat_after_s: float = STATUS_REPEAT_S) -> None:
        self.bus = bus
        self.module = module
        self.replica = replica
        self.started = time.time()
        self.extra = extra  # the component's own report (CloudHub: every node's link)
        self.repeat_after_s = repeat_after_s
        # Two locks: _lock keeps the statuses in the order they were decided (held while one is published, so
        # an "up" decided before the "down" leaves before it); _timer_lock guards _final and the repeat, and is
        # all that connected() takes. connected() runs on the network thread: waiting there for a publish that
        # waits for window slots, which only the network thread frees, would stall the connection.
        self._lock = threading.Lock()
        self._timer_lock = threading.Lock()
        self._final = False  # "down" was published (or the component stops): no "up" may follow it
        self._repeat: threading.Timer | None = None

    def report(self) -> dict[str, Any]:
        report = {"component": self.module, "pid": os.getpid(), "uptime_s": round(time.time() - self.started, 1),
                  "connected": self.bus.connection.connected, "counters": self.bus.counters.snapshot()}
        if self.replica is not None:
            report["replica"] = self.replica
        if self.extra is not None:
            report.update(self.extra())
        return report

    def on_query(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        if envelope.group != Group.HUB or envelope.op != Op.QUERY:
            return None
        return [Send(topics.inbox(self.bus.settings.side, envelope.src), envelope.reply(self.module, self.report()))]

    def publish(self, state: str) -> None:
        """Publish the retained status; after "down" (the component is stopping) nothing more."""
        with self._lock:
            with self._timer_lock:
                if self._final:
                    return
                if state == "down":
                    self._end_repeats()
            body = status_envelope(self.module, self.bus.settings.node, ComponentStatus(
                state, os.getpid(), started=int(self.started), replica=self.replica))
            self.bus.publish(topics.status(self.module, self.replica), body, retain=True, timeout=5.0)

    def stop(self) -> None:
        """Publish nothing more (the component is stopping, its broker perhaps gone)."""
        with self._timer_lock:
            self._end_repeats()

    def _end_repeats(self) -> None:
        """Under _timer_lock: nothing more is published, the pending repeat included."""
        self._final = True
        if self._repeat is not None:
            self._repeat.cancel()

    def connected(self) -> None:
        """The bus (re)connected: "up" now, on the handler thread (a restarted broker has forgotten the retained
        status), and once more ``repeat_after_s`` later (STATUS_REPEAT_S says why)."""
        self.bus.call_soon(lambda: self.publish("up"))
        with self._timer_lock:
            if self._final:
                return
            if self._repeat is not None:
                self._repeat.cancel()
            self._repeat = threading.Timer(self.repeat_after_s, lambda: self.bus.call_soon(lambda: self.publish("up")))
            self._repeat.daemon = True
            self._repeat.start()


def run_component(
    module: str,
    side: topics.Side,
    settings_cls: type[S],
    make: Callable[[S, Bus], Component],
    argv: Sequence[str] | None = None,
    *,
    description: str = "",
    error_route: ErrorRoute | None = None,
) -> int:
    """Run one component process until SIGTERM/SIGINT; returns the exit status."""
    require_module_name(module)
    s = settings.parse(settings_cls, argv, prog=f"python -m {module}", description=description)
    logs.setup(module, s.log_level, s.log_format)
    stop = StopSignal().install()
    health_file = HealthFile.from_env(module)
    bus = Bus(bus_settings(module, side, s), error_route=error_route)
    component = make(s, bus)
    health = Health(bus, module, getattr(component, "report", None), s.replica())
    if s.metrics_listen:
        metrics.serve(s.metrics_listen, metrics.ComponentCollector(module, s.node, bus.counters,
                                                                   getattr(component, "report", None)))
    bus.handle(bus.inbox, health.on_query)
    component.start()

    def on_connection(up: bool) -> None:
        if up:
            health.connected()
            health_file.set("up")
        else:
            health_file.set("down", reason=f"broker {bus.connection.url} unreachable")

    bus.connection.on_connection_change(on_connection)
    bus.start()
    log.info("%s started for node %s on %s (settings: %s)", module, s.node, describe(BrokerUrl.parse_list(s.broker)),
             _public(s))
    why = stop.wait()
    log.info("%s: %s received, draining", module, why)
    try:
        if bus.connection.connected:
            health.publish("down")
    except Exception:
        log.warning("could not publish the final status", exc_info=True)
    health.stop()
    drained = bus.close()
    component.close()
    health_file.close()
    log.info("%s stopped%s", module, "" if drained else " (some publishes were not acknowledged)")
    return 0


def _public(s: ComponentSettings) -> dict[str, Any]:
    """Settings for the start-up log line, without secrets."""
    values = dataclasses.asdict(s)
    values["broker"] = describe(BrokerUrl.parse_list(s.broker))
    return {k: v for k, v in values.items() if v is not None}
