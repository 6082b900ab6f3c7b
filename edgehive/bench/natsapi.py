"""JetStream API requests over NATS's own client protocol, for the HA benchmark's set-up of its worst case.

``bench scale --broker nats`` kills a NATS member and times the nodes' links back. How long that takes depends on
what the member led: a bridge connecting to a survivor waits for its session record, read from the
``$MQTT_sess`` stream, and while that stream has no leader (NATS elects one 4-9 s after the old one's last
heartbeat) every attempt waits out the MQTT layer's JetStream API timeout. The benchmark moves that stream's
leadership to the member it kills, so the figure is the worst case rather than a third of the time.

The protocol is text lines (CONNECT, SUB, PUB, then MSG back); the members are anonymous in the benchmark, and
this speaks only what a request needs.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from edgehive.bench.harness import BenchError
from runtime.url import BrokerUrl

INBOX = "_INBOX.edgehive-bench"


def jetstream_request(member: BrokerUrl, subject: str, body: dict[str, Any] | None = None,
                      timeout: float = 5.0) -> dict[str, Any]:
    """Send ``body`` (JSON) to the JetStream API ``subject`` through ``member``'s client port; its JSON answer."""
    payload = json.dumps(body).encode() if body is not None else b""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((member.host, member.port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            if not reader.readline().startswith(b"INFO "):
                raise BenchError(f"{member} did not greet as a NATS server")
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n'
                         + f"SUB {INBOX} 1\r\nPUB {subject} {INBOX} {len(payload)}\r\n".encode()
                         + payload + b"\r\n")
            while time.monotonic() < deadline:
                line = reader.readline()
                if not line:
                    break
                if line.startswith(b"PING"):
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    raise BenchError(f"{member} refused {subject}: {line.decode(errors='replace').strip()}")
                elif line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    answer = reader.read(size + 2)[:size]
                    found: dict[str, Any] = json.loads(answer)
                    return found
    except (OSError, ValueError) as exc:
        raise BenchError(f"JetStream request {subject} through {member}: {exc}") from exc
    raise BenchError(f"JetStream request {subject} through {member}: no answer within {timeout:.0f} s")


def stream_leader(member: BrokerUrl, stream: str, timeout: float = 1.0) -> str | None:
    """The name of the member leading ``stream``; None while it has no leader (a stream without one answers no
    request: this one then times out after ``timeout``)."""
    try:
        info = jetstream_request(member, f"$JS.API.STREAM.INFO.{stream}", timeout=timeout)
    except BenchError:
        return None
    leader = info.get("cluster", {}).get("leader")
    return leader if isinstance(leader, str) and leader else None


def move_stream_leader(member: BrokerUrl, stream: str, to: str) -> None:
    """Ask ``stream``'s leader to step down in favour of the member named ``to`` (NATS 2.11 and later)."""
    answer = jetstream_request(member, f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", {"placement": {"preferred": to}})
    if not answer.get("success"):
        raise BenchError(f"could not move {stream}'s leadership to {to}: {answer.get('error')}")
