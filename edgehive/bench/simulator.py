"""The simulator process of ``bench scale``: many simulated nodes (edgehive.bench.simnode) on one asyncio loop.

Each node keeps one MQTT connection to the cloud broker as its bridge would (client id
``edgehive-bridge-<node>``, persistent session, 10 s keepalive, a will on its up topic), through the small
client in edgehive.bench.mqtt311. The bench starts one such process per 250 nodes and drives them all at
once: ``python -m edgehive.bench.simulator --host H --port P --first I --count N`` reads commands (connect
[NODES_PER_S], drop, stats ID, stores ID, quit) on stdin and writes JSON events on stdout. ``--port P1,P2,...`` is
a clustered broker's members (``bench scale --broker nats``): node i starts on member i mod M, as bridges given the
list in different orders would spread, and moves round the list as runtime.connection does when its member dies.
With ``EDGEHIVE_SIM_PASSWORD`` set, each node logs in as the user named after it with that password, as a node does
on a broker with per-node users and ACLs; ``stores ID`` lists what every node's store holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import IO, Any

from broker.bridge import link_state
from edgehive.bench.mqtt311 import (
    CONNACK,
    PINGREQ_PACKET,
    PUBLISH,
    SUBACK,
    Publish,
    connect_packet,
    parse_publish,
    puback_packet,
    publish_packet,
    read_packet,
    subscribe_packet,
)
from edgehive.bench.simnode import KEEPALIVE_S, MQTT_KEEPALIVE_S, RECONNECT_MAX_S, STATUS_S, Note, SimNode, node_name
from runtime.backoff import Backoff, MemberRetry
from runtime.qos import check_qos
from schemas import kinds, topics
from schemas.envelope import Envelope, EnvelopeError, decode

SUBACK_FAILURE = b"\x80"
"""MQTT 3.1.1's SUBACK return code for a refused subscription."""
PASSWORD_ENV = "EDGEHIVE_SIM_PASSWORD"
"""Where the simulator finds the nodes' password (not on the command line, which every local user can read)."""


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

    Events: ``["c", node, t, member]`` link up (``member``: index of its port), ``["d", node, t, why]`` link
    lost, ``["r", node, t]`` registration answered, ``["g", node, key, rv, outcome, t]`` an object stored,
    ``["l", node, kind, t]`` a listing's last page answered, ``["stats", id, counters]``,
    ``["stores", id, {node: {key: rv}}]`` what every node's store holds. ``t`` is CLOCK_MONOTONIC in ns, the
    same clock in every process. ``password``: each node logs in as its own user with it.
    """

    def __init__(self, host: str, ports: int | Sequence[int], names: Iterable[str], out: IO[str],
                 seed: int = 0, password: str | None = None, down_qos: int = 1) -> None:
        check_qos("down_qos", down_qos)
        self.host, self.out = host, out
        self.password = password
        self.down_qos = down_qos  # of the down topic's subscription, as the bridge's --down-qos
        self.ports = (ports,) if isinstance(ports, int) else tuple(ports)
        self.member: dict[str, int] = {}  # node -> index into ports of the member it uses or tries now
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
                per_s = float(command[1]) if len(command) > 1 else 0.0  # 0: all at once
                for i, name in enumerate(n for n in self.nodes if n not in self.tasks):
                    self.tasks[name] = asyncio.create_task(self._keep_connected(name, i / per_s if per_s else 0.0))
            elif command[0] == "drop":
                self._drop_all()
            elif command[0] == "stats" and len(command) == 2:
                self.counters["links_up"] = sum(1 for link in self.links.values() if link.ready)
                self.emit("stats", command[1], dict(self.counters))
                self.flush()
            elif command[0] == "stores" and len(command) == 2:
                self.emit("stores", command[1], {name: {str(s.key): s.rv for s in node.store.all()}
                                                 for name, node in self.nodes.items()})
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

    async def _keep_connected(self, name: str, after_s: float = 0.0) -> None:
        if after_s:
            await asyncio.sleep(after_s)  # a fleet joining over time rather than all at once
        # the bridge's reconnect policy (runtime.connection)
        retry = MemberRetry(len(self.ports), Backoff(maximum=RECONNECT_MAX_S, _rng=self.rng), _rng=self.rng)
        self.member.setdefault(name, int(name.rpartition("-")[2]) % len(self.ports))
        while True:
            try:
                await self._session(name, retry)
                why = "closed by the broker"
            except (OSError, EOFError, ValueError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}"[:120]
            self.counters["links_lost"] += 1
            self.emit("d", name, time.monotonic_ns(), why)
            delay = retry.failed(time.monotonic())
            self.member[name] = (self.member[name] + 1) % len(self.ports)
            await asyncio.sleep(delay)

    async def _session(self, name: str, retry: MemberRetry) -> None:
        node = self.nodes[name]
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.ports[self.member[name]]),
                                                10)
        link = _Link(writer)
        self.links[name] = link
        try:
            link.send(connect_packet(f"edgehive-bridge-{name}", MQTT_KEEPALIVE_S, topics.link_up(name),
                                     link_state(name, False, "link lost"), clean=False,
                                     username=name if self.password is not None else None, password=self.password))
            first, body = await asyncio.wait_for(read_packet(reader), 15)
            if first >> 4 != CONNACK or len(body) < 2 or body[1] != 0:
                raise ConnectionError(f"the broker refused the connection ({body.hex()})")
            link.send(subscribe_packet(1, topics.link_down(name), self.down_qos))
            while True:
                first, body = await read_packet(reader)
                if first >> 4 == PUBLISH:
                    self._on_publish(node, link, parse_publish(first, body))
                elif first >> 4 == SUBACK and not link.ready:
                    if body[2:3] == SUBACK_FAILURE:
                        # NATS refuses a QoS 1 subscription whose JetStream consumer it could not create in time
                        # (a connect storm on a loaded cluster): the link would be up but deaf. The bridge asks
                        # again (runtime.connection); here the node connects again, which asks again too.
                        self.counters["subscribe_refused"] += 1
                        raise ConnectionError("the broker refused the subscription to the down topic")
                    retry.connected()
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
        self.emit("c", node.name, time.monotonic_ns(), self.member.get(node.name, 0))
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
    parser = argparse.ArgumentParser(prog="python -m edgehive.bench.simulator",
                                     description="simulated edge nodes for edgehive bench scale")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", required=True, help="the broker's port, or its members' ports (comma-separated)")
    parser.add_argument("--first", type=int, default=0, help="index of the first node (sim-0000 is 0)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--down-qos", type=int, default=1, choices=(0, 1),
                        help="QoS of each node's down subscription (the bridge's --down-qos; 0 on NATS)")
    args = parser.parse_args(argv)
    names = [node_name(i) for i in range(args.first, args.first + args.count)]
    ports = [int(p) for p in args.port.split(",")]
    asyncio.run(Simulator(args.host, ports, names, sys.stdout, args.seed, os.environ.get(PASSWORD_ENV),
                          args.down_qos).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(simulate(sys.argv[1:]))
