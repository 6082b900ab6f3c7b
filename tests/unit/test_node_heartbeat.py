"""EdgeD's node-status thread, one pass at a time: registration, a Lease heartbeat while nothing changed, the
status on a change and again once the cloud link comes back (edge/edged/component.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.edged.component import EdgeD, EdgeDSettings
from edge.edged.machine import MachineInfo
from edge.edged.node import NodeFacts
from runtime.connection import PublishTimeout
from runtime.counters import Counters
from schemas import kinds
from schemas.envelope import Envelope, Group, Op
from schemas.reports import LeaseHeartbeat

MACHINE = MachineInfo(os_image="Debian GNU/Linux 12 (bookworm)", kernel_version="6.1.0", architecture="amd64",
                      machine_id="m1", system_uuid="u1", boot_id="b1", hostname="gateway-7")


class RecordingBus:
    """What EdgeD hands to the edge broker, recorded; ``failing`` publishes time out."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.published: list[Envelope] = []
        self.failing = False

    def handle(self, _topic: str, _handler: Any) -> None:
        pass

    def on_session_lost(self, _callback: Any) -> None:
        pass

    def envelope(self, group: Group, op: Op, **fields: Any) -> Envelope:
        return Envelope(node="n1", src="edged", group=group, op=op, **fields)

    def publish(self, _topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        if self.failing:
            raise PublishTimeout("the broker did not take it")
        self.published.append(envelope)

    def kinds(self) -> list[str]:
        sent = [e.res.kind for e in self.published if e.res is not None]
        self.published.clear()
        return sent


@pytest.fixture
def edged(tmp_path: Path) -> tuple[EdgeD, RecordingBus]:
    bus = RecordingBus()
    settings = EdgeDSettings(node="n1", data_dir=str(tmp_path), podman_url="unix:///nonexistent/podman.sock")
    return EdgeD(settings, bus), bus  # type: ignore[arg-type]


def one_pass(edged: EdgeD, ready: bool = True, message: str = "podman is ready") -> None:
    edged._node_pass(ready, message, None, NodeFacts(machine=MACHINE, runtime_version="podman://4.3.1",
                                                     fs_path=Path(edged.settings.data_dir)))


def test_a_heartbeat_between_statuses_and_the_status_only_on_a_change(edged: tuple[EdgeD, RecordingBus]) -> None:
    node, bus = edged
    node._register_again()
    one_pass(node)
    assert bus.kinds() == [kinds.NODE, kinds.LEASE]  # registered, and heard
    for _ in range(5):
        one_pass(node)
        assert bus.kinds() == [kinds.LEASE]
    one_pass(node, ready=False, message="podman does not answer")
    assert bus.kinds() == [kinds.NODESTATUS]  # the change, which renews the Lease too
    one_pass(node, ready=False, message="podman does not answer")
    assert bus.kinds() == [kinds.LEASE]


def test_the_status_is_sent_again_when_the_link_comes_back(edged: tuple[EdgeD, RecordingBus]) -> None:
    node, bus = edged
    node._register_again()
    one_pass(node)
    bus.kinds()
    node.on_link_change(False)
    one_pass(node)
    assert bus.kinds() == [kinds.LEASE]
    node.on_link_change(True)
    one_pass(node)
    assert bus.kinds() == [kinds.NODESTATUS]
    one_pass(node)
    assert bus.kinds() == [kinds.LEASE]


def test_what_the_broker_did_not_take_stays_due(edged: tuple[EdgeD, RecordingBus]) -> None:
    node, bus = edged
    node._register_again()
    bus.failing = True
    with pytest.raises(PublishTimeout):
        one_pass(node)
    bus.failing = False
    one_pass(node)
    assert bus.kinds() == [kinds.NODE, kinds.LEASE]  # the registration, again
    bus.failing = True
    with pytest.raises(PublishTimeout):
        one_pass(node, ready=False, message="podman does not answer")
    bus.failing = False
    one_pass(node, ready=False, message="podman does not answer")
    assert bus.kinds() == [kinds.NODESTATUS]


def test_the_heartbeat_is_a_lease_update_with_the_conditions_without_heartbeat_times(
        edged: tuple[EdgeD, RecordingBus]) -> None:
    node, bus = edged
    node._register_again()
    one_pass(node)
    bus.published.clear()
    one_pass(node)
    (heartbeat,) = bus.published
    assert heartbeat.res is not None
    assert (heartbeat.op, heartbeat.res.kind, heartbeat.res.name) == (Op.UPDATE, kinds.LEASE, "n1")
    conditions = LeaseHeartbeat.parse(heartbeat.body).conditions
    assert conditions is not None
    assert {c["type"]: c["status"] for c in conditions}["Ready"] == "True"
    assert all("lastHeartbeatTime" not in c and c["lastTransitionTime"] for c in conditions)
