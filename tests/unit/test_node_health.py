"""When a silent node turns Unknown (the grace period), and how a Lease's freshness is read."""

from __future__ import annotations

import time

from cloud.edgecontroller.lease import lease_body
from cloud.edgecontroller.nodehealth import lease_fresh, unknown_conditions, unknown_delay


def test_the_grace_period_counts_from_the_last_heartbeat() -> None:
    assert unknown_delay(100.0, 40.0, 110.0) == 30.0  # heard 10 s before the link was seen gone
    assert unknown_delay(100.0, 40.0, 150.0) == 0.0  # silent for longer than the grace already (keepalive timeout)
    assert unknown_delay(None, 40.0, 150.0) == 40.0  # never heard by this process: the whole period


def test_a_lease_is_fresh_while_held_and_renewed_within_its_duration() -> None:
    now = time.time()
    lease = lease_body("edge-1", 40, now - 30, "uid-1")
    assert lease_fresh(lease, now)
    assert not lease_fresh(lease, now + 11)
    assert not lease_fresh({"spec": {**lease["spec"], "holderIdentity": ""}}, now)
    assert not lease_fresh(None, now)
    assert lease["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "edge-1",
                                                     "uid": "uid-1"}]
    assert "ownerReferences" not in lease_body("edge-1", 40, now, None)["metadata"]


def test_every_condition_turns_unknown_and_keeps_its_transition_when_already_unknown() -> None:
    current = [{"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "t0", "lastTransitionTime": "t0"},
               {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": "t1", "lastTransitionTime": "t1"}]
    out = {c["type"]: c for c in unknown_conditions(current, "t9", 40.0)}
    assert {k: c["status"] for k, c in out.items()} == {"MemoryPressure": "Unknown", "Ready": "Unknown"}
    assert out["MemoryPressure"]["lastTransitionTime"] == "t9"
    assert out["Ready"]["lastTransitionTime"] == "t1"
    assert out["Ready"]["lastHeartbeatTime"] == "t1"  # the last time the node was heard, not now
    assert "40 s" in out["Ready"]["message"]
    assert [c["type"] for c in unknown_conditions([], "t9", 40.0)] == ["Ready"]
