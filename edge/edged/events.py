"""EdgeD's event recorder: what happened to a pod, a container or the node, as a kubelet records it.

The hooks in the pass (kubelet.py, containeractions.py) and the node loop (component.py) call ``pod``,
``container`` and ``node`` with kubelet's reasons and message formats; the correlator
(eventcorrelator.py) turns each into the Event to send or nothing; a thread of its own hands them to
EdgeHub's outbox, so that a pod worker never waits on the bus. Its queue is bounded, as kubelet's
broadcaster's is (1000, dropping when full): events are for people, a pod's work comes first.

What reaches EdgeHub is capped again there (edge/edgehub/outbox.py): hours offline keep a bounded number of
events, repeats coalesced, the oldest Normal ones dropped first.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.edged.eventcorrelator import Correlator, Occurrence
from edge.edged.podspec import ConfigError, ContainerPlan, PodPlan
from runtime.counters import Counters
from schemas import kinds
from schemas.events import NORMAL, WARNING, KubeEvent, ObjectRef
from schemas.kubeobj import meta
from schemas.resource import ResourceKey, ResourceKeyError

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
EVERY_PASS_S = 10.0
"""How often a state that every pass finds again (a back-off, a missing ConfigMap) is recorded again: about
as often as kubelet's syncs of such a pod record it."""

Send = Callable[[KubeEvent], None]
ResourceVersion = Callable[[ResourceKey], str | None]


def field_path(container: ContainerPlan) -> str:
    return f"spec.{'initContainers' if container.init else 'containers'}{{{container.name}}}"


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it (kubelet's "in 1.234s", "in 832.1ms")."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3f}".rstrip("0").rstrip(".") + "µs"
    if seconds < 1:
        return f"{seconds * 1e3:.6f}".rstrip("0").rstrip(".") + "ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.9f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class EventRecorder:
    """``send`` None: events are correlated and dropped (EdgeD's parts on their own, in tests)."""

    def __init__(self, node: str, send: Send | None = None, *, counters: Counters | None = None,
                 resource_version: ResourceVersion | None = None, clock: Callable[[], float] = time.time) -> None:
        self.node_name = node
        self.send = send
        self.counters = counters or Counters()
        self.resource_version = resource_version or (lambda _key: None)
        self.clock = clock
        self.correlator = Correlator(node)
        self._lock = threading.Lock()
        self._queue: queue.Queue[KubeEvent | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._full = False

    def start(self) -> None:
        if self.send is not None and self._thread is None:
            self._thread = threading.Thread(target=self._sender, name="events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=5)

    # -- what the hooks call --------------------------------------------------------------------

    def pod(self, key: ResourceKey, uid: str, reason: str, message: str, *, warning: bool = False,
            path: str | None = None, every_s: float = 0.0) -> None:
        ref = ObjectRef("Pod", key.name, key.namespace, uid or None, self.resource_version(key), path)
        self.record(Occurrence(ref, WARNING if warning else NORMAL, reason, message), every_s=every_s)

    def container(self, plan: PodPlan, container: ContainerPlan, reason: str, message: str, *,
                  warning: bool = False, every_s: float = 0.0) -> None:
        self.pod(plan.key, plan.uid, reason, message, warning=warning, path=field_path(container), every_s=every_s)

    def node(self, reason: str, message: str, *, warning: bool = False) -> None:
        # kubelet's reference to its Node has the node's name as its UID.
        self.record(Occurrence(ObjectRef("Node", self.node_name, uid=self.node_name), WARNING if warning else NORMAL,
                               reason, message))

    def record(self, occurrence: Occurrence, *, every_s: float = 0.0) -> None:
        with self._lock:
            filtered = self.correlator.filtered
            event = self.correlator.observe(occurrence, self.clock(), every_s=every_s)
            if self.correlator.filtered > filtered:
                self.counters.inc("events_filtered")
        if event is None or self.send is None:
            return
        try:
            self._queue.put_nowait(event)
            self._full = False
        except queue.Full:
            self.counters.inc("events_dropped")
            if not self._full:  # said once per time it fills, not for every event of a flood
                self._full = True
                log.warning("event queue full (%d): dropping events until EdgeHub takes them again", QUEUE_SIZE)

    def _sender(self) -> None:
        assert self.send is not None
        while (event := self._queue.get()) is not None:
            try:
                self.send(event)
                self.counters.inc("events_sent")
            except Exception as exc:  # the bus or EdgeHub refused it: an event is not worth a retry loop
                self.counters.inc("events_dropped")
                log.warning("event %s (%s) not handed to EdgeHub: %s", event.name, event.reason, exc)


def config_wait_event(pod: dict[str, Any], exc: ConfigError, lookup: Callable[[ResourceKey], dict[str, Any] | None]
                      ) -> tuple[str, str]:
    """The event (reason, message) of a pod waiting for an object it refers to: FailedMount, as kubelet's volume
    manager says it, when a volume's ConfigMap or Secret is missing or a claim is not ready; otherwise (an env
    reference) kubelet's "Error: ..." of a container it cannot create."""
    namespace = meta(pod).namespace or "default"
    for volume, kind, name in _volume_refs(pod):
        try:
            missing = lookup(ResourceKey(namespace, kind, name)) is None
        except ResourceKeyError:
            missing = True
        if missing:
            return "FailedMount", f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
    if exc.reason == "ContainerCreating":  # a claim not bound or its volume not there yet
        return "FailedMount", f"Unable to attach or mount volumes: {exc.message}"
    return "Failed", f"Error: {exc.message}"


def _volume_refs(pod: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(volume, kind, name) of each ConfigMap and Secret the pod's volumes need (the optional ones left out)."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            secret_name = "secretName" if source is volume else "name"  # a projected secret has a name
            for field_name, kind, name_field in (("configMap", kinds.CONFIGMAP, "name"),
                                                 ("secret", kinds.SECRET, secret_name)):
                ref = source.get(field_name)
                if isinstance(ref, dict) and not ref.get("optional") and isinstance(ref.get(name_field), str):
                    out.append((str(volume.get("name")), kind, ref[name_field]))
    return out


# -- node events ----------------------------------------------------------------------------------

NODE_CONDITION_REASONS = {
    "MemoryPressure": ("NodeHasInsufficientMemory", "NodeHasSufficientMemory"),
    "DiskPressure": ("NodeHasDiskPressure", "NodeHasNoDiskPressure"),
    "PIDPressure": ("NodeHasInsufficientPID", "NodeHasSufficientPID"),
    "Ready": ("NodeReady", "NodeNotReady"),
}
"""Each node condition's event reasons, for status True and for False, as kubelet records them."""


def condition_events(previous: dict[str, str], current: dict[str, str]) -> list[str]:
    """The reasons to record for conditions (type -> status) that changed since ``previous`` (all at first)."""
    out = []
    for kind, (if_true, if_false) in NODE_CONDITION_REASONS.items():
        status = current.get(kind)
        if status is not None and status != previous.get(kind):
            out.append(if_true if status == "True" else if_false)
    return out


class NodeEvents:
    """The node's own events: Starting once, each condition's transitions, Rebooted when the boot id differs
    from the one the last EdgeD of this data directory saw (kept in ``boot_id_file``)."""

    def __init__(self, recorder: EventRecorder, boot_id_file: Path) -> None:
        self.recorder = recorder
        self.boot_id_file = boot_id_file
        self._conditions: dict[str, str] = {}

    def starting(self, boot_id: str) -> None:
        self.recorder.node("Starting", "Starting kubelet.")
        try:
            before = self.boot_id_file.read_text().strip()
        except OSError:
            before = ""
        if before and boot_id and before != boot_id:
            self.recorder.node("Rebooted", f"Node {self.recorder.node_name} has been rebooted, boot id: {boot_id}",
                               warning=True)
        try:
            self.boot_id_file.parent.mkdir(parents=True, exist_ok=True)
            self.boot_id_file.write_text(boot_id + "\n")
        except OSError as exc:
            log.warning("cannot keep the boot id in %s (a reboot will not be recorded): %s", self.boot_id_file, exc)

    def status(self, conditions: dict[str, str]) -> None:
        for reason in condition_events(self._conditions, conditions):
            self.recorder.node(reason, f"Node {self.recorder.node_name} status is now: {reason}")
        self._conditions = dict(conditions)
