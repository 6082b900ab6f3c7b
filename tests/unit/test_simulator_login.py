"""The bench simulator's login on a broker with per-node users (an HA fleet test's NATS cluster): a CONNECT
carrying the node's user name and password, as the bridge's would."""

from __future__ import annotations

from edgehive.bench.mqtt311 import CONNECT, connect_packet


def test_connect_with_a_user_carries_the_name_and_password_after_the_will() -> None:
    packet = connect_packet("edgehive-bridge-sim-0007", 10, "edgehive/link/sim-0007/up", b"gone", clean=False,
                            username="sim-0007", password="pw")
    assert packet[0] == CONNECT << 4
    body = packet[2:]
    assert packet[1] == len(body)
    assert body[7] == 0x2C | 0x80 | 0x40  # the bridge's flags, plus user name and password
    assert body.endswith(b"\x00\x04gone\x00\x08sim-0007\x00\x02pw")


def test_without_a_user_the_connect_is_anonymous_as_before() -> None:
    anonymous = connect_packet("c", 10, "t", b"w", clean=False)
    assert anonymous[2 + 7] & 0xC0 == 0
    assert anonymous == connect_packet("c", 10, "t", b"w", clean=False, username=None, password="ignored")
