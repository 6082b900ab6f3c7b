"""The HTTP upgrade to SPDY/3.1 that starts an exec, attach or port-forward connection.

What a kubelet answers (facts of the Kubernetes httpstream handshake): the request must say
``Connection: Upgrade`` and ``Upgrade: SPDY/3.1``, else 400; the client lists the sub-protocols it speaks in
``X-Stream-Protocol-Version`` headers, most preferred first, and the server takes the first of them it also
speaks (no header at all is the legacy v1 client), else 403 with the ones it accepts in
``X-Accepted-Stream-Protocol-Versions``; the 101 answer names the chosen one in ``X-Stream-Protocol-Version``.

A WebSocket upgrade (what kubectl 1.30 and later try first) is refused here with 400, and the client then
falls back to SPDY, as it does against any kubelet that does not speak its WebSocket protocol
(v5.channel.k8s.io); a server that does speak it answers with cloud.stream.websocket instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

SPDY_UPGRADE = "SPDY/3.1"
PROTOCOL_HEADER = "X-Stream-Protocol-Version"
ACCEPTED_HEADER = "X-Accepted-Stream-Protocol-Versions"

HeaderLines = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class UpgradeAnswer:
    """The HTTP response to write: a 101 (``upgraded``) after which the socket speaks SPDY, or a refusal."""
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    protocol: str = ""

    @property
    def upgraded(self) -> bool:
        return self.status == 101

    def to_bytes(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if not self.upgraded:
            lines += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(self.body)}",
                      "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def header_values(headers: HeaderLines, name: str) -> list[str]:
    """Every value of a header, over repeated lines and comma-separated lists, case-insensitively by name."""
    wanted = name.lower()
    return [part.strip() for key, value in headers if key.lower() == wanted
            for part in value.split(",") if part.strip()]


def is_websocket_request(headers: HeaderLines) -> bool:
    return any(value.lower() == "websocket" for value in header_values(headers, "Upgrade"))


def answer_upgrade(headers: HeaderLines, supported: Sequence[str]) -> UpgradeAnswer:
    """The answer to an upgrade request for a server that speaks ``supported`` (most preferred first)."""
    if is_websocket_request(headers):
        return _refuse(400, "Bad Request", "unable to upgrade: this server streams over SPDY/3.1 only, "
                       "not WebSocket")
    connection = [value.lower() for value in header_values(headers, "Connection")]
    upgrade = [value.lower() for value in header_values(headers, "Upgrade")]
    if "upgrade" not in connection or SPDY_UPGRADE.lower() not in upgrade:
        return _refuse(400, "Bad Request", "unable to upgrade: missing upgrade headers in request "
                       f"(Connection: Upgrade and Upgrade: {SPDY_UPGRADE})")
    offered = header_values(headers, PROTOCOL_HEADER)
    chosen = ""
    if offered:
        chosen = next((protocol for protocol in offered if protocol in supported), "")
        if not chosen:
            refusal = _refuse(403, "Forbidden", "unable to upgrade: unable to negotiate protocol: client supports "
                              f"{offered}, server accepts {list(supported)}")
            refusal.headers.append((ACCEPTED_HEADER, ", ".join(supported)))
            return refusal
    answer = [("Connection", "Upgrade"), ("Upgrade", SPDY_UPGRADE)]
    if chosen:
        answer.append((PROTOCOL_HEADER, chosen))
    return UpgradeAnswer(101, "Switching Protocols", answer, protocol=chosen)


def _refuse(status: int, reason: str, message: str) -> UpgradeAnswer:
    return UpgradeAnswer(status, reason, [], (message + "\n").encode())
