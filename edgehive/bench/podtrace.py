"""Where a pod's time goes between its creation and Running, from marks that exist anyway.

No wire field is added for it: each mark is a time some part already records or shows.

- ``created``, ``scheduled``, ``running``: the bench's own watch of the API server (the pod first seen; first
  seen with ``spec.nodeName``, the scheduler's binding; first seen Running, the node's status written). The
  API's own times (creationTimestamp, the PodScheduled condition) have whole seconds only.
- ``controller``: the ``ts`` of EdgeController's envelope for the pod (made when its informer saw it bound);
  ``cloudhub``: when that envelope arrived on the node's down link on the cloud broker (CloudHub sent it).
- ``stored``: the ``ts`` of MetaManager's forward to EdgeD (made after the SQLite commit), on the edge broker.
- ``token_asked`` / ``token_got``: EdgeD's service account token query (the ``ts`` it made it with: its worker
  is planning the pod) and the arrival of the answer. Every pod of the bench has a token volume (the
  ServiceAccount admission plugin gives it one), so the query marks the start of EdgeD's work on the pod.
- ``podman_pod``, ``container_created``, ``container_started``: podman's own times (inspect: the pod's infra
  container created, the app container created and started, in nanoseconds).
- ``reported``: the ``ts`` of EdgeD's first status report saying Running.

The stages are the differences between consecutive marks, p50 and p99 over the pods of one group.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge.podlabels import UID_LABEL
from edgehive.bench.harness import percentiles, watch_envelopes
from runtime.connection import Connection
from runtime.url import BrokerUrl
from schemas import kinds, topics
from schemas.envelope import Envelope, Op
from schemas.fields import BodyError
from schemas.tokens import TokenQuery

MARKS = ("created", "scheduled", "controller", "cloudhub", "stored", "token_asked", "token_got", "podman_pod",
         "container_created", "container_started", "reported", "running")
STAGES = {
    "scheduler": ("created", "scheduled"),
    "edgecontroller": ("scheduled", "controller"),
    "cloudhub": ("controller", "cloudhub"),
    "link_and_store": ("cloudhub", "stored"),
    "edged_pickup": ("stored", "token_asked"),
    "token": ("token_asked", "token_got"),
    "plan_and_pod_create": ("token_got", "podman_pod"),
    "container_create": ("podman_pod", "container_created"),
    "container_start": ("container_created", "container_started"),
    "status_report": ("container_started", "reported"),
    "status_written": ("reported", "running"),
}
"""Each stage: from one mark to the next (all in nanoseconds since the epoch)."""


@dataclass
class PodMarks:
    uid: str = ""
    marks: dict[str, int] = field(default_factory=dict)

    def mark(self, name: str, at_ns: int) -> None:
        self.marks.setdefault(name, at_ns)  # the first time counts


class PodTrace:
    """Collects the marks of every pod in ``namespace`` of NODE, by pod name."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.pods: dict[str, PodMarks] = {}
        self._tokens: dict[str, str] = {}  # token query id -> pod name
        self._lock = threading.Lock()
        self._watches: list[Connection] = []

    def mark(self, pod: str, name: str, at_ns: int, uid: str = "") -> None:
        with self._lock:
            marks = self.pods.setdefault(pod, PodMarks())
            if uid:
                marks.uid = uid
            marks.mark(name, at_ns)

    # -- the API server's watch (fed by the bench's own) -----------------------------------------------------

    def on_pod(self, pod: dict[str, Any], at_ns: int) -> None:
        meta = pod.get("metadata") or {}
        name, uid = str(meta.get("name")), str(meta.get("uid") or "")
        self.mark(name, "created", at_ns, uid)
        if (pod.get("spec") or {}).get("nodeName"):
            self.mark(name, "scheduled", at_ns)

    def on_running(self, name: str, at_ns: int) -> None:
        self.mark(name, "running", at_ns)

    # -- the brokers -------------------------------------------------------------------------------------------

    def watch_brokers(self, node: str, cloud: BrokerUrl, edge: BrokerUrl) -> None:
        clock = time.time_ns
        self._watches = [
            watch_envelopes(cloud, "bench-trace-down", topics.link_down(node), self._on_down, "the down link",
                            clock=clock),
            watch_envelopes(edge, "bench-trace-edged", topics.inbox(topics.Side.EDGE, "edged"), self._on_edged,
                            "EdgeD's inbox", clock=clock),
            watch_envelopes(edge, "bench-trace-up", topics.to_cloud(), self._on_up, "what the node sends up",
                            clock=clock),
        ]

    def close(self) -> None:
        for watch in self._watches:
            watch.close(drain_timeout=0)
        self._watches = []

    def _ours(self, envelope: Envelope, kind: str) -> bool:
        return envelope.res is not None and envelope.res.kind == kind and envelope.res.namespace == self.namespace

    def _on_down(self, envelope: Envelope, at_ns: int) -> None:
        if self._ours(envelope, kinds.POD) and envelope.op in (Op.INSERT, Op.UPDATE):
            assert envelope.res is not None
            self.mark(envelope.res.name, "controller", envelope.ts * 1_000_000)
            self.mark(envelope.res.name, "cloudhub", at_ns)

    def _on_edged(self, envelope: Envelope, at_ns: int) -> None:
        if envelope.src == "metamanager" and self._ours(envelope, kinds.POD) and envelope.op in (Op.INSERT,
                                                                                                 Op.UPDATE):
            assert envelope.res is not None
            self.mark(envelope.res.name, "stored", envelope.ts * 1_000_000)
        elif envelope.op == Op.RESPONSE and envelope.parent is not None:
            with self._lock:
                pod = self._tokens.pop(envelope.parent, None)
            if pod is not None:
                self.mark(pod, "token_got", at_ns)

    def _on_up(self, envelope: Envelope, _at_ns: int) -> None:
        if self._ours(envelope, kinds.SERVICEACCOUNTTOKEN) and envelope.op == Op.QUERY:
            try:
                query = TokenQuery.parse(envelope.body)
            except BodyError:
                return
            with self._lock:
                self._tokens[envelope.id] = query.pod
            self.mark(query.pod, "token_asked", envelope.ts * 1_000_000)
        elif self._ours(envelope, kinds.PODSTATUS) and isinstance(envelope.body, dict):
            status = envelope.body.get("status") or {}
            if isinstance(status, dict) and status.get("phase") == "Running":
                assert envelope.res is not None
                self.mark(envelope.res.name, "reported", envelope.ts * 1_000_000)

    # -- podman ----------------------------------------------------------------------------------------------

    def read_podman(self, inspect: Callable[[], list[dict[str, Any]]]) -> None:
        """Podman's times of the pods running now (``inspect``: every container's ``podman inspect``)."""
        by_uid = {m.uid: name for name, m in list(self.pods.items()) if m.uid}
        containers = inspect()
        pod_created = {c.get("Pod"): _time_ns(c.get("Created")) for c in containers if c.get("IsInfra")}
        for c in containers:
            pod = by_uid.get(((c.get("Config") or {}).get("Labels") or {}).get(UID_LABEL, ""))
            if pod is None or c.get("IsInfra"):
                continue
            created, started = _time_ns(c.get("Created")), _time_ns((c.get("State") or {}).get("StartedAt"))
            infra = pod_created.get(c.get("Pod"))
            if infra:
                self.mark(pod, "podman_pod", infra)
            if created:
                self.mark(pod, "container_created", created)
            if started:
                self.mark(pod, "container_started", started)

    # -- the figures -----------------------------------------------------------------------------------------

    def breakdown(self, prefix: str) -> dict[str, dict[str, float]]:
        """Per stage, p50 and p99 in ms over the pods named ``prefix``... that have both of its marks."""
        with self._lock:
            chosen = [m.marks for name, m in self.pods.items() if name.startswith(prefix)]
        out: dict[str, dict[str, float]] = {}
        for stage, (start, end) in STAGES.items():
            spans = [max(0, m[end] - m[start]) for m in chosen if start in m and end in m]
            if spans:
                out[stage] = {**percentiles(spans), "pods": len(spans)}
        return out


def _time_ns(text: object) -> int:
    """podman's ``2026-12-03T22:17:06.397337302Z`` (or with an offset) in ns since the epoch; 0 if absent."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return 0
    base, _, rest = text.partition(".")
    digits = rest[:len(rest) - len(rest.lstrip("0123456789"))]
    zone = rest[len(digits):] if rest else base[19:]
    base = base[:19]
    offset = 0 if zone in ("", "Z") else _offset_s(zone)
    seconds = datetime.fromisoformat(base).replace(tzinfo=UTC).timestamp() - offset
    return int(seconds) * 1_000_000_000 + int((digits or "0").ljust(9, "0")[:9])


def _offset_s(zone: str) -> int:
    sign = -1 if zone.startswith("-") else 1
    hours, _, minutes = zone[1:].partition(":")
    return sign * (int(hours) * 3600 + int(minutes or 0) * 60)


def format_breakdown(groups: dict[str, dict[str, dict[str, float]]]) -> Iterable[str]:
    """A table: one row per stage, one column per group, ``p50 / p99`` ms."""
    names = list(groups)
    yield "  where the time goes (ms, p50 / p99):" + "".join(f"{n:>22}" for n in names)
    for stage in STAGES:
        cells = []
        for name in names:
            found = groups[name].get(stage)
            cells.append(f"{found['p50']:.0f} / {found['p99']:.0f}" if found else "-")
        yield f"    {stage:<33}" + "".join(f"{c:>22}" for c in cells)


def inspect_all(run: Callable[..., Any]) -> list[dict[str, Any]]:
    """Every container of the bench's podman, inspected (``run``: Podman.run)."""
    ids = run("ps", "--all", "--quiet").stdout.split()
    if not ids:
        return []
    found = json.loads(run("inspect", *ids).stdout or "[]")
    return [c for c in found if isinstance(c, dict)]
