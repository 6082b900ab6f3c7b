"""``edgehive bench scale``: one CloudHub and one EdgeController serving 1,000 simulated edge nodes.

Real: etcd and kube-apiserver (edgehive.localcluster), the cloud broker (mosquitto by default), CloudHub and
EdgeController, each its own process as in production. The cloud broker takes anonymous clients here: per-node
users would add 1,000 password hashes to its start and nothing to what is measured (the link ACL has its own
tests). DeviceController does not run: the question is what CloudHub and EdgeController cost per node.

Simulated: the edge nodes. What the cloud sees of a real node is its bridge: one MQTT connection to the cloud
broker (client id ``edgehive-bridge-<node>``, persistent session, 10 s keepalive, a will on its up topic)
carrying what EdgeHub, MetaManager and EdgeD say. A simulated node says exactly that: EdgeHub's hello and
keepalives (15 s), EdgeD's registration and node status (10 s) through an outbox that coalesces statuses and
resends until the cloud answers (10 s), MetaManager's acknowledgements and store listings, with a dict instead
of SQLite and no containers (the pods stay Pending: reporting them Running would add 10,000 pod status writes
to the set-up and nothing to what is measured). Many nodes share one asyncio process with a small MQTT 3.1.1
client of its own (250 paho clients with a network thread each would cost more than the cloud under test, and
paho's connect blocks); 250 nodes per process.

Phases, with progress on stderr:

1. baselines, with 0 nodes: the cloud components' memory and idle CPU; the raw broker rate (a QoS 1 publisher
   and subscriber pair on the same broker, as ``bench link``); the raw API server rate (pods created one after
   another by one client, bound to no node, so that nothing acts on them);
2. set-up: the nodes connect and register, then one ConfigMap per node and N x P pods that mount it are created
   one after another by one client: pods delivered to the nodes per second against the raw create rate; then a
   wait (up to 5 minutes) until EdgeController has worked off what the set-up left it and answers node statuses
   before the next one replaces them;
3. steady state: CPU of every process over 60 s with the nodes idle but for keepalives and node status; memory
   against phase 1, per node; node statuses written (the API server's own request counters) and acknowledged
   against those sent; the latency from a ConfigMap update in the API server to its receipt on the node, at 50
   updates/s;
4. thundering herd: every node's socket is cut at once (no DISCONNECT: the broker publishes the wills); once
   CloudHub has seen them all go and EdgeController has marked them NodeReady Unknown, every node's ConfigMap
   changes; then all nodes reconnect at once while the ConfigMap updates go on: their latency, and the time
   until every node is resynchronised: CloudHub announced its new session, the node answered EdgeController's
   listing of its pods, ConfigMaps and Secrets, and it holds the ConfigMap version written while it was away.

The machine is noisy (2 cores, shared), so every figure that has a baseline from the same run is also given as
a ratio to it. Run the simulator alone with ``python -m edgehive.bench_scale --host H --port P --first I
--count N``: it reads commands (connect, drop, stats ID, quit) on stdin and writes JSON events on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from broker.bridge import link_state
from broker.embedded import BrokerSettings
from broker.launch import BrokerMissing, broker_argv, wait_ready
from cloud.kube import Kube
from edge.edged.node import node_object, node_status
from edge.metamanager.manager import MAX_PAGE, STORED_KINDS, BadObject, check_object
from edge.metamanager.store import Outcome, newer
from edgehive.bench import (
    BenchError,
    _free_port,
    _percentiles,
    _process,
    _Route,
    _run_path,
    bench_apiserver,
    bench_workdir,
    watch_envelopes,
)
from edgehive.bench_edge import _wait_status
from edgehive.localcluster import LocalApiServer, LocalClusterError
from runtime.backoff import Backoff
from runtime.url import BrokerUrl
from schemas import kinds, topics
from schemas.envelope import Envelope, EnvelopeError, Group, Op, decode
from schemas.resource import ResourceKey

NAMESPACE = "scale"
RAW_NAMESPACE = "scale-raw"
NODE_PREFIX = "sim-"
NODES_PER_SIMULATOR = 250
MODULE = "metamanager"  # the src of a node's answers to what the cloud sends

# What a real node does, from the components' defaults (EdgeD, EdgeHub, the bridge).
STATUS_S = 10.0  # EdgeD's node_status_s
KEEPALIVE_S = 15.0  # EdgeHub's keepalive_s
RESEND_S = 10.0  # EdgeHub's resend_s
MQTT_KEEPALIVE_S = 10  # the bridge's cloud_keepalive
RECONNECT_MAX_S = 5.0  # the bridge's reconnect_max_s
OWNED_KINDS = (kinds.POD, kinds.CONFIGMAP, kinds.SECRET)  # what EdgeController lists on every new session

IMAGE = "localhost/busybox:latest"
RAW_BROKER_MESSAGES = 5000
RAW_API_PODS = 500
IDLE_S = 10.0
SETTLE_S = 10.0
STEADY_S = 60.0
LATENCY_RATE = 50
STEADY_LATENCY_S = 10.0
HERD_MIN_STREAM_S = 10.0
HERD_TIMEOUT_S = 300.0
CATCH_UP_S = 300.0
CATCH_UP_PROBE_S = 10.0

GOAL_CPU_CORES = 1.0
GOAL_KB_PER_NODE = 50.0
GOAL_RESYNC_S = 60.0
CLOUD = ("cloudhub", "edgecontroller")
STATUS_WRITE = "PATCH nodes/status"  # how EdgeController writes a node status


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index:04d}"


def configmap_key(node: str) -> str:
    """The resource key of a node's ConfigMap, as the node's store spells it."""
    return str(ResourceKey(NAMESPACE, kinds.CONFIGMAP, f"cfg-{node}"))


# -- MQTT 3.1.1: just what a bridge's cloud connection uses -------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP = 1, 2, 3, 4, 8, 9, 12, 13
PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
MAX_REMAINING = 268_435_455


def encode_length(length: int) -> bytes:
    """MQTT's remaining length: 7 bits a byte, low first, the top bit saying another byte follows."""
    if not 0 <= length <= MAX_REMAINING:
        raise ValueError(f"an MQTT packet cannot carry {length} bytes")
    out = bytearray()
    while True:
        length, byte = divmod(length, 128)
        out.append(byte | (128 if length else 0))
        if not length:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + encode_length(len(body)) + body


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, keepalive: int, will_topic: str, will_payload: bytes, *, clean: bool) -> bytes:
    """CONNECT with a QoS 1 retained will, as the bridge's cloud connection makes it (no user: anonymous broker)."""
    flags = (0x02 if clean else 0) | 0x04 | (1 << 3) | 0x20
    header = _field(b"MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    return _packet(CONNECT << 4, header + _field(client_id.encode()) + _field(will_topic.encode()) +
                   _field(will_payload))


def subscribe_packet(packet_id: int, topic: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE << 4 | 0x02, packet_id.to_bytes(2, "big") + _field(topic.encode()) + bytes([qos]))


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH, not retained."""
    return _packet(PUBLISH << 4 | 0x02, _field(topic.encode()) + packet_id.to_bytes(2, "big") + payload)


def puback_packet(packet_id: int) -> bytes:
    return _packet(PUBACK << 4, packet_id.to_bytes(2, "big"))


@dataclass(frozen=True)
class Publish:
    topic: str
    packet_id: int | None  # None at QoS 0
    payload: bytes


def parse_publish(first: int, body: bytes) -> Publish:
    qos = (first >> 1) & 3
    length = int.from_bytes(body[:2], "big")
    topic = body[2:2 + length].decode()
    pos = 2 + length
    packet_id = None
    if qos:
        packet_id = int.from_bytes(body[pos:pos + 2], "big")
        pos += 2
    return Publish(topic, packet_id, body[pos:])


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(first byte, body) of the next packet; IncompleteReadError when the connection ends."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 127) << shift
        if not byte & 128:
            break
        shift += 7
        if shift > 21:
            raise ValueError("malformed MQTT remaining length")
    return first, (await reader.readexactly(length)) if length else b""


# -- one simulated node: its logic, no I/O ------------------------------------------------------------------------

@dataclass
class Pending:
    """An upstream entry waiting for the cloud's answer, as in EdgeHub's outbox."""

    envelope: Envelope
    payload: bytes
    sent_at: float | None = None


@dataclass(frozen=True)
class Note:
    """What a downstream envelope did to a node, for the bench's books.

    ``what``: got (an object, ``key`` and ``rv``, ``outcome`` applied or stale), listed (a page of ``key``, a kind;
    ``last`` when it was the last page), acked (the cloud answered an outbox entry about kind ``key``), late (an
    answer to an entry no longer waiting: answered before, or replaced by a newer status), refused.
    """

    what: str
    key: str = ""
    rv: str | None = None
    outcome: str = ""
    last: bool = True


def _uid(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return uid if isinstance(uid, str) else None


class SimNode:
    """One edge node as the cloud sees it, minus the I/O.

    EdgeHub: the hello and keepalives, and an outbox whose entries stay until the cloud answers them (status
    entries coalesce: a newer status replaces the older one, sent or not). EdgeD: registration once, then node
    status. MetaManager: a store of what the cloud sent (key -> kind, resourceVersion, UID: all a listing needs),
    applied with MetaManager's rules (an older or equal version is acknowledged as stale, a delete with a UID
    removes only that UID) and answered with the parent id; store listings answered page by page.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.store: dict[str, tuple[str, str, str | None]] = {}
        self.outbox: dict[str, Pending] = {}
        self.registered = False

    def keepalive(self) -> Envelope:
        return Envelope(node=self.name, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                        body={"outbox": len(self.outbox)})

    def register(self) -> Envelope:
        """Queue EdgeD's Node registration, unless it was answered or is waiting already."""
        for pending in self.outbox.values():
            if pending.envelope.res is not None and pending.envelope.res.kind == kinds.NODE:
                return pending.envelope
        obj = node_object(self.name, "127.0.0.1", True, "simulated by edgehive bench scale")
        return self._queue(Envelope(node=self.name, src="edged", group=Group.RESOURCE, op=Op.INSERT,
                                    res=ResourceKey(None, kinds.NODE, self.name), body=obj))

    def status(self, now: float | None = None) -> Envelope:
        """Queue EdgeD's node status; it replaces an older one still in the outbox, as EdgeHub's coalescing does."""
        for msg_id in [m for m, p in self.outbox.items()
                       if p.envelope.res is not None and p.envelope.res.kind == kinds.NODESTATUS]:
            del self.outbox[msg_id]
        body = {"status": node_status("127.0.0.1", True, "simulated by edgehive bench scale", now or time.time())}
        return self._queue(Envelope(node=self.name, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                                    res=ResourceKey(None, kinds.NODESTATUS, self.name), body=body))

    def _queue(self, envelope: Envelope) -> Envelope:
        self.outbox[envelope.id] = Pending(envelope, envelope.encode())
        return envelope

    def due(self, now: float, resend_s: float = RESEND_S) -> list[Pending]:
        """Entries never sent, or unanswered for ``resend_s``; in the order they were queued."""
        return [p for p in self.outbox.values() if p.sent_at is None or now - p.sent_at >= resend_s]

    def link_lost(self) -> None:
        """EdgeHub sends the whole outbox again, in order, when the link returns."""
        for pending in self.outbox.values():
            pending.sent_at = None

    def on_down(self, envelope: Envelope) -> tuple[list[Envelope], Note | None]:
        """The node's answers to one envelope from the cloud, and what it did."""
        if envelope.node != self.name:
            return [], Note("refused", "another node's envelope")  # EdgeHub drops it
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            pending = self.outbox.pop(envelope.parent, None)
            if pending is None:  # an entry answered twice, or replaced (a newer status) before its answer came
                return [], Note("late")
            kind = pending.envelope.res.kind if pending.envelope.res is not None else ""
            if kind == kinds.NODE and envelope.op == Op.RESPONSE:
                self.registered = True
            return [], Note("acked" if envelope.op == Op.RESPONSE else "refused", kind)
        if envelope.group == Group.META and envelope.op == Op.QUERY:
            return self._listing(envelope)
        if envelope.op not in (Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH) or envelope.res is None:
            return [envelope.error(MODULE, 400, f"MetaManager does not handle {envelope.op.value} "
                                                f"{envelope.group.value} without a resource")], Note("refused")
        key = envelope.res
        if key.kind not in STORED_KINDS:
            return [envelope.error(MODULE, 400, f"unknown kind {key.kind!r}")], Note("refused", str(key))
        if envelope.op == Op.DELETE:
            outcome = self._delete(key, _uid(envelope.body))
        else:
            try:
                check_object(key, envelope.body)
            except BadObject as exc:
                return [envelope.error(MODULE, 400, str(exc))], Note("refused", str(key))
            outcome = self._upsert(key, envelope.rv, envelope.body)
        return ([envelope.reply(MODULE, {"outcome": outcome.value})],
                Note("got", str(key), envelope.rv, outcome.value))

    def _upsert(self, key: ResourceKey, rv: str | None, obj: Any) -> Outcome:
        uid, held = _uid(obj), self.store.get(str(key))
        if held is not None and not newer(rv, held[1]) and (uid is None or uid == held[2]):
            return Outcome.STALE
        self.store[str(key)] = (key.kind, rv or "0", uid)
        return Outcome.APPLIED

    def _delete(self, key: ResourceKey, uid: str | None) -> Outcome:
        held = self.store.get(str(key))
        if held is None or (uid is not None and held[2] not in (uid, None)):
            return Outcome.ABSENT
        del self.store[str(key)]
        return Outcome.DELETED

    def _listing(self, envelope: Envelope) -> tuple[list[Envelope], Note | None]:
        body = envelope.body if isinstance(envelope.body, dict) else {}
        kind, after, limit = body.get("list"), body.get("after") or "", body.get("limit") or 200
        if kind is not None and not isinstance(kind, str):
            return [envelope.error(MODULE, 400, "body.list must be a kind name")], Note("refused", "listing")
        if not isinstance(after, str) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE:
            return [envelope.error(MODULE, 400, f"body.after must be a key and body.limit 1..{MAX_PAGE}")], \
                Note("refused", "listing")
        keys = sorted(k for k, (k_kind, _, _) in self.store.items() if k > after and kind in (None, k_kind))
        page, more = keys[:limit], len(keys) > limit
        items = [{"key": k, "rv": self.store[k][1], "uid": self.store[k][2]} for k in page]
        return ([envelope.reply(MODULE, {"items": items, "next": page[-1] if more else None})],
                Note("listed", str(kind), last=not more))


# -- the simulator process: many nodes on one asyncio loop --------------------------------------------------------

class _Link:
    """One node's connection to the cloud broker."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.ready = False  # CONNACK and SUBACK seen: as the bridge, only then is the link up
        self.last_write = time.monotonic()
        self._packet_id = 1  # 1 is the SUBSCRIBE's

    def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.last_write = time.monotonic()

    def publish(self, topic: str, payload: bytes) -> None:
        self._packet_id = self._packet_id % 65535 + 1
        self.send(publish_packet(topic, payload, self._packet_id))

    def abort(self) -> None:
        """Close the socket without DISCONNECT: the broker publishes the will, as for a cut link."""
        self.writer.transport.abort()


class Simulator:
    """The nodes ``names`` on the broker at ``host:port``; commands on stdin, events as JSON lines on ``out``.

    Events: ``["c", node, t]`` link up, ``["d", node, t, why]`` link lost, ``["r", node, t]`` registration
    answered, ``["g", node, key, rv, outcome, t]`` an object stored, ``["l", node, kind, t]`` a listing's last
    page answered, ``["stats", id, counters]``. ``t`` is CLOCK_MONOTONIC in ns, the same clock in every process.
    """

    def __init__(self, host: str, port: int, names: Iterable[str], out: IO[str], seed: int = 0) -> None:
        self.host, self.port, self.out = host, port, out
        self.nodes = {name: SimNode(name) for name in names}
        self.links: dict[str, _Link] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.next_status: dict[str, float] = {}
        self.next_keepalive: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self._lines: list[str] = []

    def emit(self, *fields: Any) -> None:
        self._lines.append(json.dumps(fields, separators=(",", ":")))

    def flush(self) -> None:
        if self._lines:
            self.out.write("\n".join(self._lines) + "\n")
            self.out.flush()
            self._lines.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[str] = asyncio.Queue()

        def read_commands() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, line.strip())
            loop.call_soon_threadsafe(commands.put_nowait, "quit")

        threading.Thread(target=read_commands, name="commands", daemon=True).start()
        ticker = asyncio.create_task(self._tick())
        while True:
            command = (await commands.get()).split()
            if not command:
                continue
            if command[0] == "connect":
                for name in self.nodes:
                    if name not in self.tasks:
                        self.tasks[name] = asyncio.create_task(self._keep_connected(name))
            elif command[0] == "drop":
                self._drop_all()
            elif command[0] == "stats" and len(command) == 2:
                self.counters["links_up"] = sum(1 for link in self.links.values() if link.ready)
                self.emit("stats", command[1], dict(self.counters))
                self.flush()
            elif command[0] == "quit":
                break
        self._drop_all()
        ticker.cancel()
        self.flush()

    def _drop_all(self) -> None:
        """Every socket at once, before any task gets to run again: one thundering herd, not a trickle."""
        for link in self.links.values():
            link.abort()
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    async def _keep_connected(self, name: str) -> None:
        backoff = Backoff(maximum=RECONNECT_MAX_S, _rng=self.rng)  # the bridge's reconnect policy
        while True:
            try:
                await self._session(name, backoff)
                why = "closed by the broker"
            except (OSError, EOFError, ValueError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}"[:120]
            self.counters["links_lost"] += 1
            self.emit("d", name, time.monotonic_ns(), why)
            await asyncio.sleep(backoff.next())

    async def _session(self, name: str, backoff: Backoff) -> None:
        node = self.nodes[name]
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
        link = _Link(writer)
        self.links[name] = link
        try:
            link.send(connect_packet(f"edgehive-bridge-{name}", MQTT_KEEPALIVE_S, topics.link_up(name),
                                     link_state(name, False, "link lost"), clean=False))
            first, body = await asyncio.wait_for(read_packet(reader), 15)
            if first >> 4 != CONNACK or len(body) < 2 or body[1] != 0:
                raise ConnectionError(f"the broker refused the connection ({body.hex()})")
            link.send(subscribe_packet(1, topics.link_down(name)))
            while True:
                first, body = await read_packet(reader)
                if first >> 4 == PUBLISH:
                    self._on_publish(node, link, parse_publish(first, body))
                elif first >> 4 == SUBACK and not link.ready:
                    backoff.reset()
                    self._on_ready(node, link)
        finally:
            link.abort()
            if self.links.get(name) is link:
                del self.links[name]
            node.link_lost()

    def _on_ready(self, node: SimNode, link: _Link) -> None:
        link.ready = True
        now = time.monotonic()
        self.counters["connects"] += 1
        self.emit("c", node.name, time.monotonic_ns())
        self._publish(link, node, node.keepalive())  # EdgeHub's hello: CloudHub starts the session on it
        if not node.registered:
            node.register()
        self._send_due(node, link, now)
        self.next_keepalive[node.name] = now + KEEPALIVE_S
        self.next_status.setdefault(node.name, now + self.rng.uniform(0, STATUS_S))  # nodes start at random times

    def _publish(self, link: _Link, node: SimNode, envelope: Envelope) -> None:
        link.publish(topics.link_up(node.name), envelope.encode())
        self.counters["tx"] += 1

    def _send_due(self, node: SimNode, link: _Link, now: float) -> None:
        for pending in node.due(now):
            if pending.sent_at is not None:
                self.counters["resent"] += 1
            link.publish(topics.link_up(node.name), pending.payload)
            pending.sent_at = now
            self.counters["tx"] += 1

    def _on_publish(self, node: SimNode, link: _Link, publish: Publish) -> None:
        self.counters["rx"] += 1
        t = time.monotonic_ns()
        try:
            envelope = decode(publish.payload)
        except EnvelopeError:
            self.counters["invalid"] += 1
            envelope = None
        if envelope is not None:
            replies, note = node.on_down(envelope)
            for reply in replies:
                self._publish(link, node, reply)
            if note is not None:
                self._record(node, note, t)
        if publish.packet_id is not None:
            link.send(puback_packet(publish.packet_id))  # after the answer, as MetaManager acks after its commit

    def _record(self, node: SimNode, note: Note, t: int) -> None:
        self.counters[f"{note.what}_{note.key}" if note.what in ("acked", "listed") else note.what] += 1
        if note.what == "got":
            self.counters[note.outcome] += 1
            self.emit("g", node.name, note.key, note.rv, note.outcome, t)
        elif note.what == "listed" and note.last:
            self.emit("l", node.name, note.key, t)
        elif note.what == "acked" and note.key == kinds.NODE:
            self.emit("r", node.name, t)

    async def _tick(self) -> None:
        """EdgeD's status (queued while offline too, coalesced), EdgeHub's keepalives and resends, MQTT pings."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for name, node in self.nodes.items():
                if node.registered and now >= self.next_status.get(name, now + 1):
                    node.status()
                    self.counters["status_queued"] += 1
                    self.next_status[name] = max(self.next_status[name] + STATUS_S, now)
                link = self.links.get(name)
                if link is None or not link.ready:
                    continue
                if now >= self.next_keepalive[name]:
                    self._publish(link, node, node.keepalive())
                    self.next_keepalive[name] = now + KEEPALIVE_S
                self._send_due(node, link, now)
                if now - link.last_write >= MQTT_KEEPALIVE_S / 2:
                    link.send(PINGREQ_PACKET)
            self.flush()


def simulate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgehive.bench_scale",
                                     description="simulated edge nodes for edgehive bench scale")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first node (sim-0000 is 0)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [node_name(i) for i in range(args.first, args.first + args.count)]
    asyncio.run(Simulator(args.host, args.port, names, sys.stdout, args.seed).run())
    return 0


# -- pure parts of the bench's books ------------------------------------------------------------------------------

def match_latencies(writes: Iterable[tuple[str, int, int]],
                    receipts: Mapping[str, list[tuple[int, int]]]) -> tuple[list[int], int]:
    """Latency of each write (key, resourceVersion, time written): until the node first held that version or a
    newer one (CloudHub's queue lets a newer version replace one not sent yet). Returns (latencies, unmatched)."""
    latencies: list[int] = []
    missing = 0
    for key, rv, written in writes:
        arrived = [t for got_rv, t in receipts.get(key, ()) if got_rv >= rv]
        if arrived:
            latencies.append(max(0, min(arrived) - written))
        else:
            missing += 1
    return latencies, missing


def resynced_at(start: int, *, session: int | None, listed: Mapping[str, int], holds: int | None,
                kinds_listed: Iterable[str] = OWNED_KINDS) -> int | None:
    """When a node was resynchronised after ``start``: the latest of CloudHub announcing its new session, the
    node answering the listing of every kind, and the node holding what changed while it was away; None while
    any of them is missing."""
    times = [session, holds, *(listed.get(kind) for kind in kinds_listed)]
    if any(t is None or t < start for t in times):
        return None
    return max(t for t in times if t is not None)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline`` to 3 decimals; None when either is missing or the baseline is 0."""
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def cpu_seconds(stat: str, ticks_per_s: int) -> float:
    """User + system CPU seconds of all threads from a /proc/PID/stat line (the name may hold spaces)."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def rollup_kb(text: str) -> tuple[int, int]:
    """(Rss, Pss) in kB from /proc/PID/smaps_rollup."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0])
    if set(values) != {"Rss", "Pss"}:
        raise ValueError("no Rss/Pss lines: not a smaps_rollup")
    return values["Rss"], values["Pss"]


_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_counts(metrics: str) -> Counter[str]:
    """Requests the API server has served so far, as 'VERB resource[/subresource]', from its own
    ``apiserver_request_total`` (what EdgeController really wrote, whatever it was asked to)."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(labels_text))
        name = f"{labels.get('verb', '?')} {labels.get('resource', '?')}"
        if labels.get("subresource"):
            name += f"/{labels['subresource']}"
        counts[name] += int(float(value))
    return counts


def busy_cores(before: list[int], after: list[int]) -> float:
    """Cores kept busy between two /proc/stat 'cpu' lines (user nice system idle iowait irq softirq steal)."""
    total = sum(after[:8]) - sum(before[:8])
    idle = (after[3] + after[4]) - (before[3] + before[4])
    return (os.cpu_count() or 1) * (total - idle) / total if total > 0 else 0.0


# -- measuring processes ------------------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pids: Mapping[str, list[int]]) -> dict[str, float]:
    out = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            with contextlib.suppress(OSError):
                total += cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), TICKS)
        out[name] = total
    return out


def _machine() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def _memory(pid: int) -> tuple[int, int]:
    return rollup_kb(Path(f"/proc/{pid}/smaps_rollup").read_text())


@dataclass
class _Window:
    """CPU of every process (and of the machine) between ``start()`` and ``stop()``."""

    pids: Mapping[str, list[int]]
    began: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    machine: list[int] = field(default_factory=list)

    def start(self) -> _Window:
        self.began, self.cpu, self.machine = time.monotonic(), _cpu(self.pids), _machine()
        return self

    def stop(self) -> tuple[float, dict[str, float], float]:
        """(seconds, CPU seconds per process, machine cores busy)."""
        seconds = time.monotonic() - self.began
        after = _cpu(self.pids)
        return seconds, {k: round(after[k] - self.cpu[k], 2) for k in after}, round(busy_cores(self.machine,
                                                                                                _machine()), 2)


# -- the simulators, seen from the bench --------------------------------------------------------------------------

class _Fleet:
    """The simulator processes and what they report."""

    def __init__(self, stack: ExitStack, url: BrokerUrl, nodes: int, work: Path) -> None:
        self.names = [node_name(i) for i in range(nodes)]
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.connected: dict[str, int] = {}  # node -> its simulator's last link up
        self.registered: set[str] = set()
        self.first_got: dict[str, int] = {}  # object key -> first receipt on its node
        self.receipts: dict[str, list[tuple[int, int]]] = {}  # ConfigMap key -> [(rv, when)]
        self.listed: dict[str, dict[str, int]] = {}  # node -> kind -> last listing answered
        self.stale = 0
        self._stats: dict[str, dict[str, dict[str, int]]] = {}
        self.procs: list[subprocess.Popen[str]] = []
        for index, first in enumerate(range(0, nodes, NODES_PER_SIMULATOR)):
            count = min(NODES_PER_SIMULATOR, nodes - first)
            argv = [sys.executable, "-m", "edgehive.bench_scale", "--host", url.host, "--port", str(url.port),
                    "--first", str(first), "--count", str(count), "--seed", str(index)]
            with (work / f"simulator-{index}.log").open("wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                        bufsize=1)
            self.procs.append(proc)
            stack.callback(self._stop, proc)
            threading.Thread(target=self._read, args=(proc,), name=f"simulator-{index}", daemon=True).start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def command(self, command: str) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise BenchError(f"bench scale: simulator {proc.pid} exited with {proc.returncode}; see its log")
            assert proc.stdin is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()

    def stats(self) -> dict[str, int]:
        """Every simulator's counters, summed."""
        ask = f"s{time.monotonic_ns()}"
        self.command(f"stats {ask}")
        with self.changed:
            if not self.changed.wait_for(lambda: len(self._stats.get(ask, {})) == len(self.procs), 30):
                raise BenchError("bench scale: the simulators did not report their counters within 30 s")
            total: Counter[str] = Counter()
            for counters in self._stats.pop(ask).values():
                total.update(counters)
        return dict(total)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                self._apply(str(proc.pid), event)
                self.changed.notify_all()

    def _apply(self, source: str, event: list[Any]) -> None:
        kind = event[0]
        if kind == "c":
            self.connected[event[1]] = event[2]
        elif kind == "d":
            self.connected.pop(event[1], None)
        elif kind == "r":
            self.registered.add(event[1])
        elif kind == "g":
            _, _node, key, rv, outcome, t = event
            self.first_got.setdefault(key, t)
            if outcome == "stale":
                self.stale += 1
            if "/configmap/" in key and isinstance(rv, str) and rv.isdigit():
                self.receipts.setdefault(key, []).append((int(rv), t))
        elif kind == "l":
            self.listed.setdefault(event[1], {})[event[2]] = event[3]
        elif kind == "stats":
            self._stats.setdefault(event[1], {})[source] = event[2]

    def _stop(self, proc: subprocess.Popen[str]) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Sessions:
    """CloudHub's view of the nodes: its retained session announcements on the cloud broker, as they arrive."""

    def __init__(self, url: BrokerUrl) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, tuple[Op, int]] = {}
        self.connection = watch_envelopes(url, f"bench-scale-sessions-{os.getpid()}", topics.all_node_sessions(),
                                          self._on_envelope, "CloudHub's session announcements",
                                          clock=time.monotonic_ns)

    def _on_envelope(self, envelope: Envelope, t: int) -> None:
        with self.lock:
            self.last[envelope.node] = (envelope.op, t)

    def count(self, op: Op, since: int = 0) -> int:
        with self.lock:
            return sum(1 for last_op, t in self.last.values() if last_op == op and t >= since)

    def connected_at(self, node: str) -> int | None:
        with self.lock:
            found = self.last.get(node)
        return found[1] if found is not None and found[0] == Op.CONNECTED else None

    def close(self) -> None:
        self.connection.close(drain_timeout=0)


# -- the API server, from the bench's side (a client like kubectl) ------------------------------------------------

def _api(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    response = call(*args, _preload_content=False, **kwargs)
    data: dict[str, Any] = json.loads(response.data or b"{}")
    return data


def _pod(name: str, node: str | None, configmap: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if node is not None:
        spec["nodeName"] = node
    if configmap is not None:
        container["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
        spec["volumes"] = [{"name": "cfg", "configMap": {"name": configmap}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "scale"}}, "spec": spec}


def _set_configmap(core: Any, node: str, value: str) -> int:
    """Change a node's ConfigMap; its new resourceVersion."""
    obj = _api(core.patch_namespaced_config_map, f"cfg-{node}", NAMESPACE, {"data": {"v": value}})
    return int(obj["metadata"]["resourceVersion"])


class _Stream(threading.Thread):
    """ConfigMap updates at ``rate``/s to random nodes, from a client of its own, until stopped."""

    def __init__(self, kube: Kube, names: list[str], rate: float, seed: int) -> None:
        super().__init__(name="configmap-stream", daemon=True)
        self.kube, self.names, self.rate = kube, names, rate
        self.rng = random.Random(seed)
        self.writes: list[tuple[str, int, int]] = []  # (ConfigMap key, resourceVersion, when written)
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic_ns()
        i = 0
        while not self.halt.is_set():
            due = start + int(i * 1e9 / self.rate)
            while (now := time.monotonic_ns()) < due and not self.halt.is_set():
                time.sleep(min(0.005, (due - now) / 1e9))
            node = self.rng.choice(self.names)
            written = time.monotonic_ns()
            try:
                rv = _set_configmap(self.kube.core, node, f"stream-{i}")
            except Exception:  # counted and reported: one failed write is not a reason to stop measuring
                self.errors += 1
            else:
                self.writes.append((configmap_key(node), rv, written))
            i += 1

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=30)


# -- the report -----------------------------------------------------------------------------------------------------

@dataclass
class ScaleReport:
    broker: str
    nodes: int
    pods_per_node: int
    simulators: int
    notes: list[str]
    # baselines, same run
    raw_broker_msgs_per_s: float
    raw_api_creates_per_s: float
    idle_cloud_cpu_cores: float
    idle_rss_kb: dict[str, int]
    idle_pss_kb: dict[str, int]
    # set-up
    registered_s: float
    pods_delivered_per_s: float
    catch_up_s: float | None  # after the set-up, until node statuses were answered in time again
    # steady state
    steady_s: float
    steady_cpu_cores: dict[str, float]
    cloud_cpu_cores: float
    machine_busy_cores: float
    registered_rss_kb: dict[str, int]  # after registration, before any pod: the nodes' own share
    rss_kb: dict[str, int]
    pss_kb: dict[str, int]
    cloud_kb_per_node: float
    cloud_pss_kb_per_node: float
    status_sent_per_s: float
    status_written_per_s: float  # node status PATCHes the API server served
    status_acked_per_s: float  # answered before the node's next status replaced them
    late_answers_per_s: float  # answers to statuses already replaced: written, but over 10 s after they were sent
    steady_api_requests_per_s: dict[str, float]
    steady_msgs_per_s: float
    steady_latency_ms: dict[str, float]
    # thundering herd
    wills_seen_s: float
    marked_unknown_s: float | None
    herd_latency_ms: dict[str, float]
    herd_latency_samples: int
    herd_latency_missing: int
    herd_p99_ms: float | None
    herd_resync_s: float | None
    herd_resynced_nodes: int
    herd_s: float
    herd_cpu_s: dict[str, float]
    herd_api_requests_per_s: dict[str, float]
    herd_msgs_per_s: float
    herd_stale_objects: int
    ratios: dict[str, float | None] = field(default_factory=dict)
    goals: dict[str, bool | None] = field(default_factory=dict)


# -- the benchmark --------------------------------------------------------------------------------------------------

@dataclass
class _Cloud:
    work: Path
    kube: Kube
    local: LocalApiServer
    url: BrokerUrl
    pids: dict[str, list[int]]

    def requests(self) -> Counter[str]:
        """The API server's request counters (its /metrics, read with the admin token)."""
        context = ssl.create_default_context(cafile=str(self.local.pki / "ca.crt"))
        request = urllib.request.Request(f"{self.local.url}/metrics",
                                         headers={"Authorization": f"Bearer {self.local.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return request_counts(response.read().decode())
        except OSError as exc:
            raise BenchError(f"bench scale: cannot read the API server's metrics: {exc}") from exc


def _per_s(before: Counter[str], after: Counter[str], seconds: float, least: float = 0.5) -> dict[str, float]:
    """Requests per second by kind between two readings, the busiest first, those under ``least``/s left out."""
    rates = {k: round((after[k] - before[k]) / seconds, 1) for k in after}
    return {k: v for k, v in sorted(rates.items(), key=lambda kv: -kv[1]) if v >= least}


def _wait(predicate: Callable[[], bool], timeout: float, what: str,
          progress: Callable[[], str] | None = None, say: Callable[[str], None] | None = None,
          every: float = 5.0, poll: float = 0.05) -> float:
    """Seconds until ``predicate()``; BenchError after ``timeout`` (with the last progress line)."""
    start = time.monotonic()
    next_note = start + every
    while not predicate():
        now = time.monotonic()
        if now - start > timeout:
            raise BenchError(f"bench scale: timed out after {timeout:.0f} s waiting for {what}"
                             + (f" ({progress()})" if progress else ""))
        if progress is not None and say is not None and now >= next_note:
            say(f"  {now - start:5.0f} s: {progress()}")
            next_note = now + every
        time.sleep(poll)
    return time.monotonic() - start


def _start_cloud(stack: ExitStack, broker: str, say: Callable[[str], None]) -> _Cloud:
    work = bench_workdir(stack, "ehscale-")
    say(f"working in {work}; starting etcd, kube-apiserver, the {broker} cloud broker, CloudHub, EdgeController")
    local = bench_apiserver(stack, work)
    try:
        local.prepare()
        broker_dir = work / "broker"
        broker_dir.mkdir()
        port = _free_port()
        argv = broker_argv(broker, BrokerSettings(listen=(f"127.0.0.1:{port}",)), broker_dir)
    except (LocalClusterError, BrokerMissing) as exc:
        raise BenchError(f"bench scale: {exc}") from exc
    pids = {"etcd": [stack.enter_context(_process(local.etcd_argv(), work / "etcd.log")).pid],
            "apiserver": [stack.enter_context(_process(local.apiserver_argv(), work / "apiserver.log")).pid],
            "broker": [stack.enter_context(_process(argv, work / "broker.log")).pid]}
    url = BrokerUrl("127.0.0.1", port)
    _wait(local.ready, 60, f"the API server (see {work}/apiserver.log)")
    if not wait_ready(url, 20):
        raise BenchError(f"bench scale: the {broker} broker did not start; see {work}/broker.log")
    env = {**os.environ, "EDGEHIVE_BROKER": str(url)}
    for component in CLOUD:
        extra = ["--kubeconfig", str(local.kubeconfig)] if component == "edgecontroller" else []
        proc = stack.enter_context(_process([sys.executable, "-m", f"cloud.{component}", *extra],
                                            work / f"{component}.log", env))
        pids[component] = [proc.pid]
    _wait_status(url, CLOUD)
    kube = Kube.connect(str(local.kubeconfig))
    stack.callback(kube.close)
    for namespace in (NAMESPACE, RAW_NAMESPACE):
        kube.ensure_namespace(namespace)
    return _Cloud(work, kube, local, url, pids)


def _memory_of(cloud: _Cloud) -> tuple[dict[str, int], dict[str, int]]:
    """RSS and PSS of CloudHub, EdgeController and (apart, not counted as the cloud's) the broker."""
    rss, pss = {}, {}
    for name in (*CLOUD, "broker"):
        rss[name], pss[name] = _memory(cloud.pids[name][0])
    return rss, pss


def _catch_up(fleet: _Fleet, cloud: _Cloud, say: Callable[[str], None]) -> float | None:
    """Seconds until the cloud keeps up with the nodes: 90% of the node statuses sent in 10 s answered before the
    next one replaced them. The set-up (registrations, 10,000 pods) leaves EdgeController a backlog; a steady
    state measured before it is drained would be a catch-up, not a steady state. None when it never does."""
    say(f"waiting for EdgeController to catch up: node statuses answered within {RESEND_S:.0f} s of being sent")
    start = time.monotonic()
    last, last_requests, last_t = fleet.stats(), cloud.requests(), start
    while (now := time.monotonic()) - start < CATCH_UP_S:
        time.sleep(CATCH_UP_PROBE_S)
        stats, requests, now = fleet.stats(), cloud.requests(), time.monotonic()
        sent = stats.get("status_queued", 0) - last.get("status_queued", 0)
        answered = stats.get(f"acked_{kinds.NODESTATUS}", 0) - last.get(f"acked_{kinds.NODESTATUS}", 0)
        written = (requests[STATUS_WRITE] - last_requests[STATUS_WRITE]) / (now - last_t)
        say(f"  {now - start:4.0f} s: {answered} of {sent} node statuses answered in time; {written:.0f}/s written")
        if sent and answered >= 0.9 * sent:
            return round(now - start, 1)
        last, last_requests, last_t = stats, requests, now
    return None


def _unknown_nodes(core: Any) -> int:
    """Nodes whose NodeReady EdgeController set to Unknown (their link is down)."""
    listing = _api(core.list_node, label_selector="node-role.kubernetes.io/edge")
    count = 0
    for node in listing.get("items") or []:
        for condition in (node.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Ready" and condition.get("status") == "Unknown":
                count += 1
    return count


def bench_scale(nodes: int = 1000, pods_per_node: int = 10, broker: str = "mosquitto",
                progress: bool = True) -> ScaleReport:
    if nodes < 1 or pods_per_node < 0:
        raise BenchError("bench scale: --nodes must be at least 1 and --pods-per-node at least 0")
    began = time.monotonic()

    def say(text: str) -> None:
        if progress:
            print(f"bench scale [{time.monotonic() - began:6.1f} s]: {text}", file=sys.stderr, flush=True)

    notes = [f"cloud broker {broker}, anonymous (no per-node users or ACL: hashing {nodes} passwords is not what "
             "is measured)", "DeviceController not running",
             "pods stay Pending: the simulated nodes run no containers and report no pod status"]
    with ExitStack() as stack:
        cloud = _start_cloud(stack, broker, say)
        core = cloud.kube.core
        sessions = _Sessions(cloud.url)
        stack.callback(sessions.close)

        # 1. Baselines, with 0 nodes.
        say(f"baseline: CloudHub and EdgeController idle with 0 nodes for {IDLE_S:.0f} s (CPU, then memory)")
        time.sleep(3)
        window = _Window({name: cloud.pids[name] for name in CLOUD}).start()
        time.sleep(IDLE_S)
        idle_s, idle_cpu, _ = window.stop()
        idle_rss, idle_pss = _memory_of(cloud)
        say(f"baseline: raw broker rate, {RAW_BROKER_MESSAGES} QoS 1 messages from one client to another")
        raw_broker, _ = _run_path(_Route("raw", cloud.url, cloud.url, "bench/scale-raw"), RAW_BROKER_MESSAGES, None)
        say(f"baseline: raw API server rate, {RAW_API_PODS} pods bound to no node created by one client")
        start = time.perf_counter()
        for i in range(RAW_API_PODS):
            _api(core.create_namespaced_pod, RAW_NAMESPACE, _pod(f"raw-{i}", None, None))
        raw_api = RAW_API_PODS / (time.perf_counter() - start)
        _api(core.delete_collection_namespaced_pod, RAW_NAMESPACE, grace_period_seconds=0)
        say(f"  raw broker {raw_broker:.0f} msg/s, raw API {raw_api:.0f} creates/s")

        # 2. Set-up: the nodes connect and register, then their ConfigMaps and pods.
        fleet = _Fleet(stack, cloud.url, nodes, cloud.work)
        notes.append(f"{len(fleet.procs)} simulator processes, {NODES_PER_SIMULATOR} nodes each at most")
        say(f"set-up: {nodes} simulated nodes connect and register")
        fleet.command("connect")
        registered_s = _wait(
            lambda: len(fleet.registered) >= nodes and sessions.count(Op.CONNECTED) >= nodes,
            120 + nodes * 0.2, "every node to connect and register",
            lambda: f"{len(fleet.connected)} links up, CloudHub sees {sessions.count(Op.CONNECTED)} connected, "
                    f"{len(fleet.registered)} registered", say)
        time.sleep(SETTLE_S)
        registered_rss, _ = _memory_of(cloud)  # nodes and sessions, no pods yet: where the memory goes
        say(f"  all {nodes} registered in {registered_s:.1f} s; creating {nodes} ConfigMaps")
        for name in fleet.names:
            _api(core.create_namespaced_config_map, NAMESPACE,
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{name}"}, "data": {"v": "0"}})
        pod_keys = [str(ResourceKey(NAMESPACE, kinds.POD, f"{name}-p{i}"))
                    for name in fleet.names for i in range(pods_per_node)]
        say(f"set-up: creating {len(pod_keys)} pods, one after another ({pods_per_node} per node)")
        pods_start = time.monotonic_ns()
        for n, name in enumerate(fleet.names):
            for i in range(pods_per_node):
                _api(core.create_namespaced_pod, NAMESPACE, _pod(f"{name}-p{i}", name, f"cfg-{name}"))
            if (n + 1) % max(1, nodes // 10) == 0:
                with fleet.lock:
                    arrived = sum(1 for k in pod_keys if k in fleet.first_got)
                say(f"  pods for {n + 1} nodes created, {arrived} delivered")

        def delivered() -> int:
            with fleet.lock:
                return sum(1 for k in pod_keys if k in fleet.first_got)

        _wait(lambda: delivered() >= len(pod_keys), 300, "every pod to reach its node",
              lambda: f"{delivered()} of {len(pod_keys)} pods delivered", say, poll=0.5)
        with fleet.lock:
            last_pod = max((fleet.first_got[k] for k in pod_keys), default=pods_start)
            cms = sum(1 for name in fleet.names if configmap_key(name) in fleet.first_got)
        pods_rate = len(pod_keys) / max(1e-9, (last_pod - pods_start) / 1e9) if pod_keys else 0.0
        say(f"  {len(pod_keys)} pods delivered at {pods_rate:.0f}/s ({cms} ConfigMaps)")
        catch_up_s = _catch_up(fleet, cloud, say)
        if catch_up_s is None:
            notes.append(f"EdgeController did not catch up within {CATCH_UP_S:.0f} s: the steady state below is one "
                         "with a growing backlog of node statuses")

        # 3. Steady state.
        pids = {**cloud.pids, "simulators": fleet.pids}
        say(f"steady state: {STEADY_S:.0f} s with {nodes} nodes idle but for keepalives and node status")
        before, requests_before = fleet.stats(), cloud.requests()
        window = _Window(pids).start()
        end = time.monotonic() + STEADY_S
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(15.0, left))
            say(f"  {STEADY_S - max(0.0, end - time.monotonic()):.0f} s; CloudHub sees "
                f"{sessions.count(Op.CONNECTED)} connected")
        steady_s, steady_cpu, machine = window.stop()
        after, steady_requests = fleet.stats(), _per_s(requests_before, cloud.requests(), steady_s)
        rss, pss = _memory_of(cloud)
        status_sent = (after.get("status_queued", 0) - before.get("status_queued", 0)) / steady_s
        status_acked = (after.get(f"acked_{kinds.NODESTATUS}", 0) - before.get(f"acked_{kinds.NODESTATUS}", 0)) / \
            steady_s
        steady_msgs = (after.get("rx", 0) + after.get("tx", 0) - before.get("rx", 0) - before.get("tx", 0)) / steady_s
        cloud_cpu = sum(steady_cpu[name] for name in CLOUD) / steady_s
        status_written = steady_requests.get(STATUS_WRITE, 0.0)
        say(f"  cloud CPU {cloud_cpu:.2f} cores; node statuses {status_sent:.1f}/s sent, {status_written:.1f}/s "
            f"written to the API server, {status_acked:.1f}/s acknowledged before the next one")

        say(f"steady state: latency of ConfigMap updates at {LATENCY_RATE}/s for {STEADY_LATENCY_S:.0f} s")
        stream_kube = Kube.connect(str(cloud.local.kubeconfig))
        stack.callback(stream_kube.close)
        stream = _Stream(stream_kube, fleet.names, LATENCY_RATE, seed=1)
        stream.start()
        time.sleep(STEADY_LATENCY_S)
        stream.finish()

        def matched(writes: list[tuple[str, int, int]]) -> tuple[list[int], int]:
            with fleet.lock:
                return match_latencies(writes, {k: list(v) for k, v in fleet.receipts.items()})

        with contextlib.suppress(BenchError):
            _wait(lambda: matched(stream.writes)[1] == 0, 30, "the steady-state updates to arrive")
        steady_lat, steady_missing = matched(stream.writes)
        steady_p = _percentiles(steady_lat) if steady_lat else {"p50": 0.0, "p99": 0.0}
        if steady_missing or stream.errors:
            notes.append(f"steady latency: {steady_missing} updates never arrived, {stream.errors} writes failed")
        say(f"  p50 {steady_p['p50']:.1f} ms, p99 {steady_p['p99']:.1f} ms over {len(steady_lat)} updates")

        # 4. The thundering herd.
        say(f"herd: cutting all {nodes} links at once (no DISCONNECT: the broker publishes the wills)")
        herd_before, herd_requests_before = fleet.stats(), cloud.requests()
        herd_window = _Window(pids).start()
        stale_before = fleet.stale
        dropped = time.monotonic_ns()
        fleet.command("drop")
        wills_s = _wait(lambda: sessions.count(Op.DISCONNECTED, since=dropped) >= nodes, 120,
                        "CloudHub to see every node gone",
                        lambda: f"CloudHub saw {sessions.count(Op.DISCONNECTED, since=dropped)} go", say)
        say(f"  CloudHub saw all {nodes} go in {wills_s:.1f} s; waiting for EdgeController to mark them Unknown")
        marked_s: float | None
        try:
            marked_s = wills_s + _wait(lambda: _unknown_nodes(core) >= nodes, 60, "NodeReady Unknown on every node",
                                       lambda: f"{_unknown_nodes(core)} Unknown", say, poll=2.0)
        except BenchError as exc:
            marked_s = None
            notes.append(str(exc))
        say(f"herd: changing every node's ConfigMap while it is away ({nodes} updates)")
        expected = {name: _set_configmap(core, name, "offline") for name in fleet.names}

        say(f"herd: all {nodes} nodes reconnect at once; ConfigMap updates go on at {LATENCY_RATE}/s")
        stream = _Stream(stream_kube, fleet.names, LATENCY_RATE, seed=2)
        t1 = time.monotonic_ns()
        fleet.command("connect")
        stream.start()

        def resync_times() -> dict[str, int | None]:
            with fleet.lock:
                receipts = {configmap_key(n): list(fleet.receipts.get(configmap_key(n), ())) for n in fleet.names}
                listed = {n: dict(fleet.listed.get(n, {})) for n in fleet.names}
            out: dict[str, int | None] = {}
            for name in fleet.names:
                holds = [t for rv, t in receipts[configmap_key(name)] if rv >= expected[name]]
                out[name] = resynced_at(t1, session=sessions.connected_at(name), listed=listed[name],
                                        holds=min(holds) if holds else None)
            return out

        def herd_progress() -> str:
            times = resync_times()
            with fleet.lock:
                up = sum(1 for t in fleet.connected.values() if t >= t1)
                listed = sum(1 for n in fleet.names if all(fleet.listed.get(n, {}).get(k, 0) >= t1
                                                           for k in OWNED_KINDS))
            return (f"{up} links up, CloudHub sees {sessions.count(Op.CONNECTED, since=t1)} connected, {listed} "
                    f"listed, {sum(1 for t in times.values() if t is not None)} resynced")

        try:
            _wait(lambda: all(t is not None for t in resync_times().values()), HERD_TIMEOUT_S,
                  "every node to resynchronise", herd_progress, say, every=3.0, poll=0.5)
        except BenchError as exc:
            notes.append(str(exc))
        herd_done = time.monotonic_ns()
        remaining = HERD_MIN_STREAM_S - (herd_done - t1) / 1e9
        if remaining > 0:
            time.sleep(remaining)
        stream.finish()
        with contextlib.suppress(BenchError):
            _wait(lambda: matched(stream.writes)[1] == 0, 30, "the herd's updates to arrive")
        herd_s, herd_cpu, _ = herd_window.stop()
        herd_after, herd_requests = fleet.stats(), _per_s(herd_requests_before, cloud.requests(), herd_s)
        times = resync_times()
        done = [t for t in times.values() if t is not None]
        resync_s = round((max(done) - t1) / 1e9, 2) if len(done) == nodes else None
        herd_lat, herd_missing = matched(stream.writes)
        herd_p = _percentiles(herd_lat) if herd_lat else {"p50": 0.0, "p99": 0.0}
        if stream.errors:
            notes.append(f"herd: {stream.errors} ConfigMap writes failed")
        herd_msgs = (herd_after.get("rx", 0) + herd_after.get("tx", 0) - herd_before.get("rx", 0) -
                     herd_before.get("tx", 0)) / herd_s
        say(f"  resynced {len(done)} of {nodes}" + (f" in {resync_s:.1f} s" if resync_s is not None else "") +
            f"; latency p50 {herd_p['p50']:.0f} ms, p99 {herd_p['p99']:.0f} ms; tearing down")

    kb_per_node = sum(rss[k] - idle_rss[k] for k in CLOUD) / nodes
    pss_per_node = sum(pss[k] - idle_pss[k] for k in CLOUD) / nodes
    herd_p99 = herd_p["p99"] if herd_lat else None
    report = ScaleReport(
        broker=broker, nodes=nodes, pods_per_node=pods_per_node, simulators=len(fleet.procs), notes=notes,
        raw_broker_msgs_per_s=round(raw_broker, 1), raw_api_creates_per_s=round(raw_api, 1),
        idle_cloud_cpu_cores=round(sum(idle_cpu.values()) / idle_s, 3), idle_rss_kb=idle_rss, idle_pss_kb=idle_pss,
        registered_s=round(registered_s, 1), pods_delivered_per_s=round(pods_rate, 1), catch_up_s=catch_up_s,
        steady_s=round(steady_s, 1), steady_cpu_cores={k: round(v / steady_s, 3) for k, v in steady_cpu.items()},
        cloud_cpu_cores=round(cloud_cpu, 3), machine_busy_cores=machine, registered_rss_kb=registered_rss,
        rss_kb=rss, pss_kb=pss,
        cloud_kb_per_node=round(kb_per_node, 1), cloud_pss_kb_per_node=round(pss_per_node, 1),
        status_sent_per_s=round(status_sent, 1), status_written_per_s=status_written,
        status_acked_per_s=round(status_acked, 1),
        late_answers_per_s=round((after.get("late", 0) - before.get("late", 0)) / steady_s, 1),
        steady_api_requests_per_s=steady_requests,
        steady_msgs_per_s=round(steady_msgs, 1), steady_latency_ms=steady_p,
        wills_seen_s=round(wills_s, 2), marked_unknown_s=round(marked_s, 1) if marked_s is not None else None,
        herd_latency_ms=herd_p, herd_latency_samples=len(herd_lat), herd_latency_missing=herd_missing,
        herd_p99_ms=herd_p99, herd_resync_s=resync_s, herd_resynced_nodes=len(done), herd_s=round(herd_s, 1),
        herd_cpu_s=herd_cpu, herd_api_requests_per_s=herd_requests, herd_msgs_per_s=round(herd_msgs, 1),
        herd_stale_objects=fleet.stale - stale_before,
    )
    report.ratios = {
        "pods_delivered_vs_raw_api_creates": ratio(pods_rate, raw_api),
        "status_writes_offered_vs_raw_api_creates": ratio(nodes / STATUS_S, raw_api),
        "status_written_vs_sent": ratio(status_written, status_sent),
        "status_acked_vs_sent": ratio(status_acked, status_sent),
        "steady_msgs_vs_raw_broker": ratio(steady_msgs, raw_broker),
        "herd_msgs_vs_raw_broker": ratio(herd_msgs, raw_broker),
        "herd_p99_vs_steady_p99": ratio(herd_p99, steady_p["p99"] if steady_lat else None),
        "cloud_cpu_vs_idle": ratio(cloud_cpu, report.idle_cloud_cpu_cores),
    }
    report.goals = {
        "cloud_cpu_cores <= 1": cloud_cpu <= GOAL_CPU_CORES,
        "cloud_kb_per_node <= 50": kb_per_node <= GOAL_KB_PER_NODE,
        "herd_resync_s <= 60": resync_s <= GOAL_RESYNC_S if resync_s is not None else None,
    }
    return report


def print_report(report: ScaleReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "scale": {"nodes": report.nodes, "cloud_cpu_cores": report.cloud_cpu_cores,
                      "cloud_kb_per_node": report.cloud_kb_per_node, "herd_p99_ms": report.herd_p99_ms,
                      "herd_resync_s": report.herd_resync_s},
            "baselines": {"raw_broker_msgs_per_s": report.raw_broker_msgs_per_s,
                          "raw_api_creates_per_s": report.raw_api_creates_per_s,
                          "idle_cloud_cpu_cores": report.idle_cloud_cpu_cores,
                          "steady_latency_ms": report.steady_latency_ms},
            "ratios": report.ratios,
            "goals": report.goals,
            "details": asdict(report),
        }))
        return
    r = report

    def num(value: float | None, unit: str = "", digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    def goal(name: str) -> str:
        met = r.goals.get(name)
        return "not measured" if met is None else ("met" if met else "MISSED")

    cpu = r.steady_cpu_cores
    print(f"scale benchmark: {r.nodes} simulated nodes x {r.pods_per_node} pods, {r.broker} cloud broker, "
          f"{r.simulators} simulator processes")
    for note in r.notes:
        print(f"  note: {note}")
    print(f"  baselines (this run)     raw broker {r.raw_broker_msgs_per_s:.0f} msg/s (QoS 1, one Python pair); raw "
          f"API {r.raw_api_creates_per_s:.0f} pod creates/s (one client)")
    print(f"  set-up                   all registered in {r.registered_s:.1f} s; pods delivered "
          f"{r.pods_delivered_per_s:.0f}/s = {num(r.ratios['pods_delivered_vs_raw_api_creates'], digits=2)} x raw "
          f"API creates; EdgeController caught up {num(r.catch_up_s, ' s')} after")
    print(f"  steady state, {r.steady_s:.0f} s     cloud CPU {r.cloud_cpu_cores:.3f} cores (CloudHub "
          f"{cpu['cloudhub']:.3f}, EdgeController {cpu['edgecontroller']:.3f}; goal <= {GOAL_CPU_CORES:.0f}: "
          f"{goal('cloud_cpu_cores <= 1')}) = {1000 * r.cloud_cpu_cores / r.nodes:.2f} millicores per node; "
          f"idle with 0 nodes {r.idle_cloud_cpu_cores:.3f}")
    print(f"                           broker {cpu['broker']:.3f}, kube-apiserver {cpu['apiserver']:.3f}, etcd "
          f"{cpu['etcd']:.3f}, simulators {cpu['simulators']:.3f} cores; whole machine "
          f"{r.machine_busy_cores:.2f} of {os.cpu_count()} busy")
    print(f"                           node statuses {r.status_sent_per_s:.1f}/s sent = "
          f"{num(r.ratios['status_writes_offered_vs_raw_api_creates'], digits=2)} x raw API creates; "
          f"{r.status_written_per_s:.1f}/s written ({num(r.ratios['status_written_vs_sent'], digits=2)}), "
          f"{r.status_acked_per_s:.1f}/s acknowledged within 10 s ({num(r.ratios['status_acked_vs_sent'], digits=2)})"
          f", {r.late_answers_per_s:.1f}/s later")
    print("                           API requests/s: " + ", ".join(f"{k} {v:.0f}"
                                                                     for k, v in r.steady_api_requests_per_s.items()))
    print(f"                           node traffic {r.steady_msgs_per_s:.0f} msg/s = "
          f"{num(r.ratios['steady_msgs_vs_raw_broker'], digits=3)} x raw broker")
    idle_total, total = sum(r.idle_rss_kb[k] for k in CLOUD), sum(r.rss_kb[k] for k in CLOUD)
    print(f"  memory                   CloudHub + EdgeController RSS {idle_total / 1024:.0f} MB "
          f"with 0 nodes, {total / 1024:.0f} MB with {r.nodes}: {r.cloud_kb_per_node:.1f} KB per "
          f"node (goal <= {GOAL_KB_PER_NODE:.0f}: {goal('cloud_kb_per_node <= 50')}); PSS "
          f"{r.cloud_pss_kb_per_node:.1f} KB per node")
    for name in CLOUD:
        idle, registered, full = r.idle_rss_kb[name], r.registered_rss_kb[name], r.rss_kb[name]
        print(f"                           {name}: RSS {idle / 1024:.0f} MB idle, {registered / 1024:.0f} MB with "
              f"the nodes registered, {full / 1024:.0f} MB with their pods = {(full - idle) / r.nodes:.1f} KB per node "
              f"({(registered - idle) / r.nodes:.1f} before the pods)")
    print(f"                           (the broker, apart: RSS {r.idle_rss_kb['broker'] / 1024:.0f} -> "
          f"{r.rss_kb['broker'] / 1024:.0f} MB = {(r.rss_kb['broker'] - r.idle_rss_kb['broker']) / r.nodes:.1f} KB per "
          f"node)")
    print(f"  latency, API -> node     steady p50 {r.steady_latency_ms['p50']:.1f} ms, p99 "
          f"{r.steady_latency_ms['p99']:.1f} ms (ConfigMap updates at {LATENCY_RATE}/s)")
    print(f"  thundering herd          CloudHub saw all links go in {r.wills_seen_s:.1f} s (wills); NodeReady Unknown "
          f"on all after {num(r.marked_unknown_s, ' s')}")
    print(f"                           all resynced in {num(r.herd_resync_s, ' s')} ({r.herd_resynced_nodes} of "
          f"{r.nodes}; goal <= {GOAL_RESYNC_S:.0f} s: {goal('herd_resync_s <= 60')})")
    print(f"                           latency p50 {r.herd_latency_ms['p50']:.0f} ms, p99 "
          f"{num(r.herd_p99_ms, ' ms', 0)} over {r.herd_latency_samples} updates "
          f"({r.herd_latency_missing} never arrived) = "
          f"{num(r.ratios['herd_p99_vs_steady_p99'])} x steady p99")
    print(f"                           node traffic {r.herd_msgs_per_s:.0f} msg/s over {r.herd_s:.0f} s = "
          f"{num(r.ratios['herd_msgs_vs_raw_broker'], digits=3)} x raw broker; {r.herd_stale_objects} objects sent "
          f"again that the node already held")
    print("                           API requests/s: " + ", ".join(f"{k} {v:.0f}"
                                                                     for k, v in r.herd_api_requests_per_s.items()))
    print("                           CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r.herd_cpu_s.items()))


if __name__ == "__main__":
    raise SystemExit(simulate(sys.argv[1:]))
