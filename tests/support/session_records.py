"""Who served which node when, over a whole run of CloudHub replicas: the check that no node is ever served by two
replicas at once.

Two records of each node's sessions, both kept by CloudHub itself (cloud/cloudhub/routing.py):

- each replica's log: ``node N connected (session S)`` when a session starts there (a node taken, or heard again
  after a disconnect) and ``node N no longer served here`` when the node moves away. A replica serves a node from
  the first to the second; its log lines are written before it starts serving and after it stopped, so spells
  read from them are never shorter than the real ones, and two that do not overlap did not overlap.
- the retained session announcements on the cloud broker, each naming the replica that holds the session,
  watched for the whole run: what the controllers saw.

The sharded EdgeController replicas keep the same kind of record of the nodes they own (cloud/replicas/
shardloop.py logs ``node N owned here`` and ``node N no longer owned here`` right after its shard changed):
``spells(..., OWNED, UNOWNED)`` reads those, and ``double_service`` finds a node owned by two at once.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from schemas import topics
from schemas.envelope import decode
from schemas.link import SessionNews
from tests.fixtures.mqtt import MqttError, TestClient

STARTED = re.compile(r"node (\S+) connected \(session (\w+)\)")
STOPPED = re.compile(r"node (\S+) no longer served here")
OWNED = re.compile(r"node (\S+) owned here")
UNOWNED = re.compile(r"node (\S+) no longer owned here")


@dataclass(frozen=True)
class Spell:
    """One replica serving one node, from ``start`` to ``end`` (None: still serving when the log was read)."""

    replica: str
    node: str
    start: datetime
    end: datetime | None
    sessions: tuple[str, ...]

    def overlaps(self, other: Spell) -> bool:
        return (self.node == other.node and self.replica != other.replica
                and (other.end is None or self.start < other.end) and (self.end is None or other.start < self.end))


def spells(replica: str, runs: list[tuple[Path, datetime | None]], begins: re.Pattern[str] = STARTED,
           ends: re.Pattern[str] = STOPPED) -> list[Spell]:
    """The replica's spells from its logs, one per process it ran as, each with when that process was killed (None:
    still running): a killed process's open spells end then. ``begins`` and ``ends`` match a spell's first and
    last line, the node in their first group (and a session in ``begins``'s second, if it has one)."""
    found: list[Spell] = []
    for path, killed in runs:
        open_: dict[str, tuple[datetime, list[str]]] = {}
        for line in path.read_text(errors="replace").splitlines():
            try:
                at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            if (stopped := ends.search(line)) is not None:  # the end first: it must never count as a start
                if stopped.group(1) in open_:
                    start, sessions = open_.pop(stopped.group(1))
                    found.append(Spell(replica, stopped.group(1), start, at, tuple(sessions)))
            elif started := begins.search(line):
                entry = open_.setdefault(started.group(1), (at, []))
                if begins.groups > 1:
                    entry[1].append(started.group(2))
        found += [Spell(replica, node, start, killed, tuple(sessions)) for node, (start, sessions) in open_.items()]
    return found


def double_service(every: list[Spell]) -> list[tuple[Spell, Spell]]:
    """Every pair of spells in which two replicas served one node at the same time."""
    return [(a, b) for i, a in enumerate(every) for b in every[i + 1:] if a.overlaps(b)]


@dataclass(frozen=True)
class Announced:
    at: float
    node: str
    news: SessionNews


class Announcements:
    """Every session announcement on the cloud broker while it runs (the retained ones first)."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.seen: list[Announced] = []
        self._client = TestClient(host, port, username=user, password=password).connect()
        self._client.subscribe(topics.all_node_sessions())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._client.expect(timeout=0.5)
            except MqttError:
                continue
            envelope = decode(message.payload)
            self.seen.append(Announced(time.time(), envelope.node, SessionNews.parse(envelope.body)))

    def of(self, node: str) -> list[SessionNews]:
        return [a.news for a in self.seen if a.node == node]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()
