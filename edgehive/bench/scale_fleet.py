"""The simulated nodes of ``bench scale`` from the bench's side: the simulator processes and what they report
(``Fleet``), and what CloudHub announces about the nodes' sessions (``Sessions``)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from edgehive.bench.harness import BenchError, watch_envelopes
from edgehive.bench.simnode import node_name
from edgehive.bench.simulator import PASSWORD_ENV
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, Op
from schemas.fields import BodyError
from schemas.link import SessionNews

NODES_PER_SIMULATOR = 250


class Fleet:
    """The simulator processes and what they report."""

    def __init__(self, stack: ExitStack, url: BrokerUrl, nodes: int, work: Path,
                 members: Sequence[BrokerUrl] = (), password: str | None = None, down_qos: int = 1) -> None:
        """``members``: a clustered broker's members (on ``url``'s host), which the nodes spread over;
        ``password``: every node logs in as its own user with it; ``down_qos``: of each node's down subscription,
        as its bridge's (0 on NATS)."""
        self.names = [node_name(i) for i in range(nodes)]
        self.member: dict[str, int] = {}  # node -> index in ``members`` of the one its link is up on
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.connected: dict[str, int] = {}  # node -> its simulator's last link up
        self.registered: set[str] = set()
        self.first_got: dict[str, int] = {}  # object key -> first receipt on its node
        self.receipts: dict[str, list[tuple[int, int]]] = {}  # ConfigMap key -> [(rv, when)]
        self.listed: dict[str, dict[str, int]] = {}  # node -> kind -> last listing answered
        self.stale = 0
        self._stats: dict[str, dict[str, dict[str, int]]] = {}
        self._stores: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
        self.procs: list[subprocess.Popen[str]] = []
        env = dict(os.environ, **({PASSWORD_ENV: password} if password is not None else {}))
        for index, first in enumerate(range(0, nodes, NODES_PER_SIMULATOR)):
            count = min(NODES_PER_SIMULATOR, nodes - first)
            argv = [sys.executable, "-m", "edgehive.bench.simulator", "--host", url.host, "--port",
                    ",".join(str(m.port) for m in members) or str(url.port),
                    "--first", str(first), "--count", str(count), "--seed", str(index), "--down-qos", str(down_qos)]
            with (work / f"simulator-{index}.log").open("wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                        bufsize=1, env=env)
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

    def stores(self) -> dict[str, dict[str, str]]:
        """What every node's store holds now: node -> resource key -> resourceVersion."""
        ask = f"s{time.monotonic_ns()}"
        self.command(f"stores {ask}")
        with self.changed:
            if not self.changed.wait_for(lambda: len(self._stores.get(ask, {})) == len(self.procs), 30):
                raise BenchError("bench scale: the simulators did not list their stores within 30 s")
            found: dict[str, dict[str, str]] = {}
            for stores in self._stores.pop(ask).values():
                found.update(stores)
        return found

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
            self.member[event[1]] = event[3] if len(event) > 3 else 0
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
        elif kind == "stores":
            self._stores.setdefault(event[1], {})[source] = event[2]

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


class ServedBy:
    """Which replica announced each node's session, in turn: a change of replica is a node that moved."""

    def __init__(self) -> None:
        self.turns: dict[str, list[tuple[int, str | None]]] = {}  # node -> (when, replica), changes only

    def announced(self, node: str, replica: str | None, t: int) -> None:
        turns = self.turns.setdefault(node, [])
        if not turns or turns[-1][1] != replica:
            turns.append((t, replica))

    def moves_since(self, since: int) -> int:
        """The nodes that another replica than the one before took after ``since`` (each counted once)."""
        return sum(1 for turns in self.turns.values() if any(t > since for t, _ in turns[1:]))


class Sessions:
    """CloudHub's view of the nodes: its retained session announcements on the cloud broker, as they arrive."""

    def __init__(self, url: BrokerUrl) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, tuple[Op, int]] = {}
        self.served_by = ServedBy()
        self.connection = watch_envelopes(url, f"bench-scale-sessions-{os.getpid()}", topics.all_node_sessions(),
                                          self._on_envelope, "CloudHub's session announcements",
                                          clock=time.monotonic_ns)

    def _on_envelope(self, envelope: Envelope, t: int) -> None:
        replica = None
        if envelope.op == Op.CONNECTED:  # only a connected session names the replica that serves it
            with contextlib.suppress(BodyError):  # a malformed one counts as served by no replica
                replica = SessionNews.parse(envelope.body).replica
        with self.lock:
            self.last[envelope.node] = (envelope.op, t)
            if envelope.op == Op.CONNECTED:
                self.served_by.announced(envelope.node, replica, t)

    def moves_since(self, since: int) -> int:
        with self.lock:
            return self.served_by.moves_since(since)

    def count(self, op: Op, since: int = 0) -> int:
        with self.lock:
            return sum(1 for last_op, t in self.last.values() if last_op == op and t >= since)

    def connected_at(self, node: str) -> int | None:
        with self.lock:
            found = self.last.get(node)
        return found[1] if found is not None and found[0] == Op.CONNECTED else None

    def close(self) -> None:
        self.connection.close(drain_timeout=0)
