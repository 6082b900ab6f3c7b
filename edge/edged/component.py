"""EdgeD as a process: the kubelet on the edge bus.

At start it lists this node's pods, ConfigMaps, Secrets, PersistentVolumeClaims and
PersistentVolumes from MetaManager (this
is how pods come back after a reboot with no link), registers the node, and then
follows MetaManager's forwards. Pod status changes go to the cloud through EdgeHub's outbox; so does the
node status, computed every ``node_status_s`` but sent only when it changed or every ``node_status_report_s``
(edge/edged/nodereport.py, the kubelet's rule), with a Lease heartbeat every ``node_status_s`` in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edged.events import EventRecorder, NodeEvents
from edge.edged.hostfacts import DEFAULT_SECCOMP_DIR, HostFacts
from edge.edged.kubelet import Kubelet
from edge.edged.machine import Reserve, Usage, allocatable
from edge.edged.node import NodeFacts, local_machine, node_object, node_status
from edge.edged.nodereport import REPORT_S, UPDATE_S, StatusReporter, check_frequencies, heartbeat_body
from edge.edged.projection import node_allocatable
from edge.edged.runtime import PodmanRuntime
from edge.edged.tokens import TokenFetchError, TokenKeeper
from edge.edged.volumes import Volumes
from edge.linkstate import LinkState
from edge.metaclient import list_objects
from edge.storage import DiskFull, DiskGuard, StoreSettings
from runtime.bus import Bus, RequestError, RequestTimeout
from runtime.connection import PublishTimeout
from schemas import kinds, topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import Envelope, Group, Op, Send
from schemas.events import KubeEvent
from schemas.fields import BodyError
from schemas.kubeobj import ConfigObject, ObjectMeta, Pod
from schemas.reports import PodStatusReport
from schemas.resource import ResourceKey
from schemas.tokens import TokenGrant, TokenQuery
from schemas.volumeclaims import Claim, Volume

log = logging.getLogger(__name__)

MODULE = "edged"
CONFIG_KINDS = (kinds.CONFIGMAP, kinds.SECRET, kinds.PVC, kinds.PV)
"""What pods refer to: kept beside them for planning (edge/edged/podspec.py's lookup)."""


@dataclass(frozen=True)
class EdgeDSettings(StoreSettings):
    podman_url: str = field(default="unix:///run/podman/podman.sock", metadata={"help": "podman REST socket"})
    data_dir: str = field(default="/var/lib/edgehive/edged", metadata={"help": "pod volumes live here"})
    node_status_s: float = field(default=UPDATE_S, metadata={
        "help": "seconds between two computations of the node status, sent only when it changed, and between two "
                "Lease heartbeats, as the kubelet's nodeStatusUpdateFrequency"})
    node_status_report_s: float = field(default=REPORT_S, metadata={
        "help": "seconds after which the node status is sent even though nothing in it changed, as the kubelet's "
                "nodeStatusReportFrequency (at least node_status_s)"})
    pod_workers: int = field(default=8, metadata={"help": "pods acted on in parallel"})
    token_timeout_s: float = field(default=10.0, metadata={
        "help": "seconds to wait for the cloud's answer when asking for a service account token"})
    seccomp_dir: str = field(default=DEFAULT_SECCOMP_DIR, metadata={
        "help": "where a pod's Localhost seccomp profiles are looked up"})
    resolv_conf: str = field(default="/etc/resolv.conf", metadata={
        "help": "the resolver configuration pods with dnsPolicy Default or ClusterFirst start from"})
    system_reserved: str = field(default="", metadata={
        "help": "kept back from allocatable for the system and edgehive, as the kubelet's --system-reserved: "
                "cpu=100m,memory=256Mi,ephemeral-storage=1Gi"})
    max_pods: int = field(default=110, metadata={"help": "pods this node takes (the node's pods capacity)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        Reserve.parse(self.system_reserved)
        check_frequencies(self.node_status_s, self.node_status_report_s)
        if self.max_pods < 1:
            raise ValueError(f"max_pods must be at least 1, not {self.max_pods}")


class EdgeD:
    def __init__(self, settings: EdgeDSettings, bus: Bus) -> None:
        self.settings = settings
        self.disk = DiskGuard(Path(settings.data_dir), settings.disk_reserve_bytes)
        self.node = settings.node
        self.runtime = PodmanRuntime(settings.podman_url, settings.node)
        self.bus = bus
        volumes = Volumes(Path(settings.data_dir))
        self.tokens = TokenKeeper(self._fetch_token, volumes.pod_dir)
        self.events = EventRecorder(settings.node, self._send_event, counters=bus.counters)
        self.node_events = NodeEvents(self.events, Path(settings.data_dir) / "boot_id")
        self.kubelet = Kubelet(settings.node, self.runtime, volumes, self._report, workers=settings.pod_workers,
                               tokens=self.tokens, downward_allocatable=node_allocatable(Path(settings.data_dir)),
                               counters=bus.counters, allocatable=self._allocatable,
                               facts=HostFacts.detect(settings.seccomp_dir, settings.resolv_conf), events=self.events)
        self.events.resource_version = self.kubelet.resource_version  # the pods' are the kubelet's
        self._early: list[Envelope] = []  # forwards that arrived while a list was running
        self._metamanager_pid: int | None = None
        self._edgehub_pid: int | None = None
        self._register = threading.Event()
        self._resend = threading.Event()  # send the node status whatever it says (the link came back)
        self._wake = threading.Event()  # the node-status thread has something to do before its next period
        self._reporter = StatusReporter(settings.node_status_report_s)
        self.link = LinkState(bus)
        self._listed = threading.Event()
        self._list_again = False  # a relist was asked for while a list was running
        self._node_facts: NodeFacts | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._load, name="initial-list", daemon=True),
                         threading.Thread(target=self._node_loop, name="node-status", daemon=True)]

    def start(self) -> None:
        self.bus.handle(self.bus.inbox, self.on_forward, batches=True)  # MetaManager batches its forwards
        self.bus.handle(topics.status("metamanager"), self.on_metamanager_status)
        self.bus.handle(topics.status("edgehub"), self.on_edgehub_status)
        self.bus.on_session_lost(self.on_session_lost)
        self.link.on_change(self.on_link_change)
        self.link.start()
        self.events.start()
        self.node_events.starting(local_machine().boot_id)
        self.kubelet.start()
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._register.set()  # wakes the node-status thread so it can see the stop
        self._wake.set()
        self.kubelet.stop()
        self.events.stop()
        self.runtime.close()

    # -- desired state ---------------------------------------------------------------

    def on_forward(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        if envelope.src != "metamanager" or envelope.res is None or envelope.op not in (
                Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH):
            return None
        with self._lock:
            if not self._listed.is_set():
                self._early.append(envelope)
                return None
        self._apply(envelope.res, None if envelope.op == Op.DELETE else envelope.body)
        return None

    def _status(self, envelope: Envelope) -> ComponentStatus | None:
        """Another component's retained status (None, counted as refused, when the body is not one)."""
        try:
            return ComponentStatus.parse(envelope.body)
        except BodyError as exc:
            self._refuse(f"the status of {envelope.src}", exc)
            return None

    def _refuse(self, what: str, exc: BodyError) -> None:
        self.bus.counters.inc("refused")
        log.warning("refused %s: %s", what, exc)

    def on_metamanager_status(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """MetaManager (re)started: list again, since it may have died between a commit and its forward."""
        status = self._status(envelope)
        if status is None or not status.up or status.pid == self._metamanager_pid:
            return None
        first = self._metamanager_pid is None
        self._metamanager_pid = status.pid
        if not first:
            self._relist(f"MetaManager restarted (pid {status.pid})")
        return None

    def on_session_lost(self) -> None:
        """The edge broker lost its sessions (restarted without a store): a forward queued for us, and a status
        queued for EdgeHub, went with them. List again, and report the node and every pod again."""
        self._relist("the edge broker lost this component's session")
        self.kubelet.report_again()
        self._register_again()

    def _register_again(self) -> None:
        self._register.set()
        self._wake.set()

    def on_link_change(self, up: bool) -> None:
        """The cloud link came back: while it was down the cloud may have marked the node Unknown (EdgeController
        or the controller-manager, cloud/edgecontroller/nodehealth.py), which EdgeD does not see, so the next
        node status is sent even if nothing in it changed (a kubelet sees the Node it patches; EdgeD does not)."""
        if up:
            self._resend.set()
            self._wake.set()

    def _relist(self, why: str) -> None:
        with self._lock:
            if not self._listed.is_set():  # a list is running, and may have read MetaManager before the loss
                self._list_again = True
                return
            self._listed.clear()
        log.info("%s: listing this node's objects again", why)
        threading.Thread(target=self._load, name="relist", daemon=True).start()

    def on_edgehub_status(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """EdgeHub (re)appeared: what was published for the cloud before it subscribed may be gone
        (a fresh broker keeps nothing for a client it never saw), so register and report again."""
        status = self._status(envelope)
        if status is not None and status.up and status.pid != self._edgehub_pid:
            self._edgehub_pid = status.pid
            self.kubelet.report_again()
            self._register_again()
        return None

    def _apply(self, key: ResourceKey, obj: Any) -> None:
        """One object from MetaManager (None: deleted), checked here, where it enters EdgeD."""
        try:
            if key.kind == kinds.POD:
                pod = None if obj is None else _mine(Pod.parse(obj, key), self.node)
                if obj is None or pod is not None:  # a pod bound to another node is not this node's business
                    self.kubelet.set_pod(key, pod)
            elif key.kind in CONFIG_KINDS:
                self.kubelet.set_config(key, None if obj is None else _config(key, obj))
        except BodyError as exc:
            self._refuse(str(key), exc)

    def _load(self) -> None:
        """List pods, ConfigMaps and Secrets from MetaManager until it answers."""
        attempt = 0
        while not self._stop.is_set():
            try:
                pods = list_objects(self.bus, kinds.POD)
                config = {key: obj for kind in CONFIG_KINDS for key, obj in list_objects(self.bus, kind).items()}
                break
            except (RequestTimeout, RequestError, PublishTimeout) as exc:
                attempt += 1
                log.log(logging.INFO if attempt < 5 else logging.WARNING,
                        "waiting for MetaManager to list this node's objects (%s); retrying", exc)
                self._stop.wait(min(5.0, 0.5 * attempt))
        else:
            return
        mine = self._checked(pods, lambda key, obj: _mine(Pod.parse(obj, key), self.node))
        config = self._checked(config, _config)
        self.kubelet.replace_all(mine, config)
        with self._lock:
            self._listed.set()
            early, self._early = self._early, []
            again, self._list_again = self._list_again, False
        for envelope in early:
            assert envelope.res is not None
            self._apply(envelope.res, None if envelope.op == Op.DELETE else envelope.body)
        log.info("loaded %d pods and %d objects they refer to from MetaManager", len(mine), len(config))
        if again:
            self._relist("a relist was asked for during this one")

    def _checked(self, objects: dict[ResourceKey, Any], check: Callable[[ResourceKey, Any], dict[str, Any] | None]
                 ) -> dict[ResourceKey, dict[str, Any]]:
        """The listed objects that pass ``check`` (which returns what to keep, or None to leave one out); the
        others are refused, as their forwards would be."""
        out: dict[ResourceKey, dict[str, Any]] = {}
        for key, obj in objects.items():
            try:
                kept = check(key, obj)
            except BodyError as exc:
                self._refuse(str(key), exc)
                continue
            if kept is not None:
                out[key] = kept
        return out

    def _fetch_token(self, query: TokenQuery) -> TokenGrant:
        """Ask the cloud for a pod's service account token (EdgeController answers; schemas/tokens.py)."""
        envelope = self.bus.envelope(Group.RESOURCE, Op.QUERY, res=query.key(), body=query.as_body())
        try:
            reply = self.bus.request(topics.to_cloud(), envelope, timeout=self.settings.token_timeout_s)
            return TokenGrant.parse(reply.body)
        except RequestError as exc:
            raise TokenFetchError(f"{exc.reply.src} answered {exc.code}: {exc.reason}") from exc
        except (RequestTimeout, PublishTimeout) as exc:
            raise TokenFetchError(f"the cloud did not answer: {exc}") from exc
        except BodyError as exc:
            self._refuse("a token from the cloud", exc)
            raise TokenFetchError(f"the cloud's answer is not a token: {exc}") from exc

    # -- reports ---------------------------------------------------------------------

    def _report(self, key: ResourceKey, meta: ObjectMeta, status: dict[str, Any]) -> None:
        body = PodStatusReport(meta.name, meta.namespace, meta.uid, status).to_body()
        envelope = self.bus.envelope(Group.RESOURCE, Op.UPDATE, res=ResourceKey(key.namespace, kinds.PODSTATUS,
                                                                                 key.name), body=body)
        self.bus.publish(topics.to_cloud(), envelope, timeout=10)

    def _send_event(self, event: KubeEvent) -> None:
        """An Event to the cloud, through EdgeHub's outbox (events.py's thread calls this)."""
        envelope = self.bus.envelope(Group.RESOURCE, Op.UPDATE, res=event.key(), body=event.as_body())
        self.bus.publish(topics.to_cloud(), envelope, timeout=10)

    def _disk_full(self) -> str | None:
        """Why the node's stores refuse writes (they share this data directory's disk), or None."""
        try:
            self.disk.check()
        except DiskFull as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot check the free space of {self.settings.data_dir}: {exc}"
        return None

    def _facts(self, runtime_up: bool) -> NodeFacts:
        """What the node's status is built from; the runtime's version is asked for once it answers."""
        if self._node_facts is None or (runtime_up and self._node_facts.runtime_version.endswith("unknown")):
            version = self.runtime.version() if runtime_up else None
            self._node_facts = NodeFacts(runtime_version=f"podman://{version or 'unknown'}",
                                         reserve=Reserve.parse(self.settings.system_reserved),
                                         max_pods=self.settings.max_pods, fs_path=Path(self.settings.data_dir))
        return self._node_facts

    def _allocatable(self) -> dict[str, str]:
        """What admission counts pods' requests against (admission.py): the allocatable the node reports."""
        facts = self._facts(runtime_up=False)
        return allocatable(Usage.probe(facts.fs_path), facts.reserve, facts.thresholds, facts.max_pods)

    def _node_loop(self) -> None:
        """Register once EdgeHub is there (and again whenever it restarts); then, every ``node_status_s``,
        compute the node status and send it when the reporter says so, or else a Lease heartbeat: the cloud
        renews the node's Lease at either (cloud/edgecontroller/lease.py), so liveness keeps its 10 s cadence
        while the Node is written only on a change."""
        self._register.wait()
        while not self._stop.is_set():
            self._wake.clear()  # before the flags are read: one set from now on wakes the next pass at once
            ready = self.runtime.ping()
            facts = self._facts(ready)
            message = "podman is ready" if ready else f"podman does not answer at {self.settings.podman_url}"
            disk_full = self._disk_full()
            try:
                self._node_pass(ready, message, disk_full, facts)
            except PublishTimeout:
                log.warning("node status not handed to the broker; will try again")
            self._wake.wait(self.settings.node_status_s)

    def _node_pass(self, ready: bool, message: str, disk_full: str | None, facts: NodeFacts) -> None:
        """One pass of the node-status thread: registration, status or Lease heartbeat (PublishTimeout: none
        was handed to the broker, and what was due stays due)."""
        now = time.monotonic()
        if self._resend.is_set():
            self._resend.clear()
            self._reporter.forget()
        if self._register.is_set():
            self._register.clear()
            self._reporter.forget()
            obj = node_object(self.node, self.kubelet.host_ip, ready, message, disk_full, facts=facts)
            status = obj["status"] = self._reporter.computed(obj["status"])
            try:
                self._publish(Op.INSERT, kinds.NODE, obj)
            except PublishTimeout:
                self._register.set()
                raise
            self._reporter.sent(status, now)
            self._publish(Op.UPDATE, kinds.LEASE, {})  # a registration renews nothing by itself
        else:
            status = self._reporter.computed(
                node_status(self.kubelet.host_ip, ready, message, time.time(), disk_full, facts=facts))
            if self._reporter.due(status, now):
                self._publish(Op.UPDATE, kinds.NODESTATUS, {"status": status})  # renews the Lease too
                self._reporter.sent(status, now)
            else:  # with the conditions: the cloud puts back a Node whose conditions someone else changed
                self._publish(Op.UPDATE, kinds.LEASE, heartbeat_body(status))
        self.node_events.status({c["type"]: c["status"] for c in status["conditions"]})

    def _publish(self, op: Op, kind: str, body: dict[str, Any]) -> None:
        self.bus.publish(topics.to_cloud(), self.bus.envelope(
            Group.RESOURCE, op, res=ResourceKey(None, kind, self.node), body=body), timeout=10)


def _config(key: ResourceKey, obj: Any) -> dict[str, Any]:
    """An object a pod refers to, checked where it enters EdgeD (BodyError naming the field)."""
    if key.kind == kinds.PVC:
        return Claim.parse(obj, key).obj
    if key.kind == kinds.PV:
        return Volume.parse(obj, key).obj
    return ConfigObject.parse(obj, key).obj


def _mine(pod: Pod, node: str) -> dict[str, Any] | None:
    """The pod, if this node should run it (bound here, or not bound yet)."""
    return pod.obj if pod.node_name in (None, node) else None
