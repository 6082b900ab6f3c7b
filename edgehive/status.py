"""``edgehive status``: every edge node at a glance, from the API server and from CloudHub.

The API server says whether a node is Ready and what pods it has; CloudHub (asked with a
``hub``/``query`` on the bus, as any component can be) says whether its link is up, when
it last heard from it, how much waits for it and how much it still holds in its outbox.
CloudHub replicas all hear the query and each answers for its own nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from cloud.clusterpki import ClusterPki
from cloud.kube import Kube, KubeError
from runtime.bus import Bus, BusSettings, RequestError, RequestTimeout
from runtime.component import ComponentSettings, bus_settings
from runtime.connection import ConnectionSettings
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.fields import LENIENT
from schemas.kubeobj import EDGE_ROLE_LABEL, condition_states, meta, node_name, status_of


@dataclass(frozen=True)
class StatusSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on the status query"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={
        "help": "the cloud broker, as the cloud components reach it (edgehive init's cloud.yaml has it)"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    json: bool = field(default=False, metadata={"help": "one JSON object instead of a table"})
    timeout_s: float = field(default=10.0, metadata={"help": "how long to wait for CloudHub's answer"})


@dataclass
class NodeStatus:
    name: str
    ready: str = "?"
    link: str = "unknown"
    last_keepalive_s: float | None = None
    queued: int = 0
    inflight: int = 0
    outbox: int | None = None
    pods: dict[str, int] = field(default_factory=dict)


@dataclass
class HubReports:
    """The answers of CloudHub, or of its replicas: each replica reports its own nodes and names the live
    members it counts, so the answers are complete once every member named has answered."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    members: set[str] = field(default_factory=set)
    lone: bool = False
    """A CloudHub that is no replica answered: it serves every node."""

    def add(self, body: Any) -> None:
        report = LENIENT.mapping(body, "body")
        replica = LENIENT.text(report.get("replica"), "body.replica")
        if replica is None:
            self.lone = True
        else:
            self.answered.add(replica)
            self.members.update(m for m in report.get("members") or () if isinstance(m, str))
        for name, link in LENIENT.mapping(report.get("nodes"), "nodes").items():
            # A node that moved between two answers may be in both: the replica holding its session wins.
            if isinstance(link, dict) and (name not in self.nodes or link.get("connected")):
                self.nodes[name] = link

    def complete(self) -> bool:
        return self.lone or (bool(self.answered) and self.members <= self.answered)

    def missing(self) -> list[str]:
        return sorted(self.members - self.answered)


def ask_cloudhub(s: StatusSettings) -> HubReports:
    """CloudHub's report on each node's link (``connected``, ``session``, ``last_seen_s``, ``queued``,
    ``inflight``, ``outbox``), by node: from every replica, each on the query to the one inbox they share."""
    base = bus_settings("status", topics.Side.CLOUD, s)
    connection = ConnectionSettings(url=base.connection.url, client_id=f"edgehive-status-{os.getpid()}",
                                    tls=base.connection.tls)
    bus = Bus(BusSettings(connection=connection, module="status", side=topics.Side.CLOUD, node=s.node))
    query = bus.envelope(Group.HUB, Op.QUERY)
    answers: queue.Queue[Envelope] = queue.Queue()

    def on_answer(answer: Envelope, _topic: str) -> None:
        if answer.parent == query.id:
            answers.put(answer)

    bus.handle(bus.inbox, on_answer)
    bus.start()
    try:
        deadline = time.monotonic() + s.timeout_s
        if not bus.connection.wait_connected(s.timeout_s):
            raise RequestTimeout(f"cannot reach the cloud broker {bus.connection.settings.url}")
        bus.publish(topics.inbox(topics.Side.CLOUD, "cloudhub"), query, timeout=s.timeout_s)
        reports = HubReports()
        while not reports.complete() and (left := deadline - time.monotonic()) > 0:
            try:
                answer = answers.get(timeout=left)
            except queue.Empty:
                break
            if answer.op == Op.ERROR:
                raise RequestError(answer)
            reports.add(answer.body)
        if not reports.answered and not reports.lone:
            raise RequestTimeout(f"no answer to the status query within {s.timeout_s} s")
        return reports
    finally:
        bus.close(drain_timeout=0)


def gather(s: StatusSettings) -> tuple[list[NodeStatus], str | None]:
    """Every node either side knows of; the second value says what could not be asked."""
    problem = None
    try:
        reports = ask_cloudhub(s)
        hub = reports.nodes
        if reports.missing():
            problem = f"CloudHub replicas {', '.join(reports.missing())} did not answer: their nodes are not shown"
    except (RequestTimeout, RequestError) as exc:
        hub, problem = {}, f"CloudHub did not answer ({exc}): is it running, and is --broker the cloud broker?"
    kube = Kube.connect(s.kubeconfig, wait_s=0)
    try:
        nodes, _ = kube.list("node")
        pods, _ = kube.list("pod")
    finally:
        kube.close()
    found: dict[str, NodeStatus] = {}
    for node in nodes:
        node_meta = meta(node)
        name = node_meta.name or ""
        if EDGE_ROLE_LABEL not in node_meta.labels and name not in hub:
            continue  # not an edge node
        ready = condition_states(node).get("Ready", "?")
        found[name] = NodeStatus(name, ready={"True": "Ready", "False": "NotReady"}.get(ready, "Unknown"))
    for name, link in hub.items():
        entry = found.setdefault(name, NodeStatus(name))
        entry.link = "up" if link.get("connected") else "down"
        entry.last_keepalive_s = link.get("last_seen_s")
        entry.queued, entry.inflight, entry.outbox = link.get("queued", 0), link.get("inflight", 0), link.get("outbox")
    per_node: dict[str, Counter[str]] = {}
    for pod in pods:
        bound = node_name(pod)
        if bound in found:
            per_node.setdefault(bound, Counter())[status_of(pod).get("phase", "Pending")] += 1
    for name, counts in per_node.items():
        found[name].pods = dict(counts)
    return sorted(found.values(), key=lambda n: n.name), problem


def render(nodes: list[NodeStatus], problem: str | None, as_json: bool) -> str:
    if as_json:
        return json.dumps({"nodes": [asdict(n) for n in nodes], "problem": problem})
    lines = [f"{'NODE':<24} {'READY':<9} {'LINK':<5} {'LAST SEEN':>9} {'QUEUED':>6} {'INFLIGHT':>8} "
             f"{'OUTBOX':>6}  PODS"]
    for n in nodes:
        seen = "-" if n.last_keepalive_s is None else f"{n.last_keepalive_s:.0f}s ago"
        outbox = "-" if n.outbox is None else str(n.outbox)
        pods = ", ".join(f"{count} {phase}" for phase, count in sorted(n.pods.items())) or "none"
        lines.append(f"{n.name:<24} {n.ready:<9} {n.link:<5} {seen:>9} {n.queued:>6} {n.inflight:>8} {outbox:>6}  "
                     f"{pods}")
    if problem:
        lines.append(f"note: {problem}")
    return "\n".join(lines)


def describe(s: StatusSettings, name: str) -> dict[str, Any]:
    """Everything about one node: the API's view, its link, its pods and devices, its identity."""
    try:
        link = ask_cloudhub(s).nodes.get(name)
    except (RequestTimeout, RequestError) as exc:
        link = {"problem": f"CloudHub did not answer ({exc})"}
    kube = Kube.connect(s.kubeconfig, wait_s=0)
    try:
        node = kube.get_node(name)
        pods, _ = kube.list("pod")
        try:
            devices, _ = kube.list("device")
        except KubeError:
            devices = []  # the CRDs are not installed
        identity = None
        with contextlib.suppress(KubeError):
            identity = ClusterPki(kube).registry().nodes.get(name)
    finally:
        kube.close()
    return {
        "node": name,
        "registered": node is not None,
        "conditions": condition_states(node),
        "addresses": [a.get("address") for a in LENIENT.mappings(status_of(node).get("addresses"), "addresses")],
        "link": link,
        "pods": sorted(f"{meta(p).namespace}/{meta(p).name} {status_of(p).get('phase', 'Pending')}"
                       for p in pods if node_name(p) == name),
        "devices": sorted(f"{meta(d).namespace}/{meta(d).name}" for d in devices if node_name(d) == name),
        "identity": identity,
    }


def render_description(found: dict[str, Any]) -> str:
    lines = [f"Node:        {found['node']}{'' if found['registered'] else ' (not registered in the API server)'}"]
    lines.append("Conditions:  " + (", ".join(f"{k}={v}" for k, v in found["conditions"].items()) or "-"))
    lines.append("Addresses:   " + (", ".join(found["addresses"]) or "-"))
    link = found["link"] or {}
    if "problem" in link:
        lines.append(f"Link:        unknown: {link['problem']}")
    elif link:
        lines.append(f"Link:        {'up' if link.get('connected') else 'down'}, session {link.get('session')}, "
                     f"last heard {link.get('last_seen_s')} s ago; queued {link.get('queued')}, in flight "
                     f"{link.get('inflight')}, edge outbox {link.get('outbox', '-')}")
    else:
        lines.append("Link:        never connected")
    ident = found["identity"]
    lines.append(f"Identity:    certificate {ident.get('serial')} until {ident.get('not_after')}" if ident
                 else "Identity:    not joined with a token (or revoked)")
    lines.append(f"Pods ({len(found['pods'])}):" + "".join(f"\n  {p}" for p in found["pods"]))
    lines.append(f"Devices ({len(found['devices'])}):" + "".join(f"\n  {d}" for d in found["devices"]))
    return "\n".join(lines)
