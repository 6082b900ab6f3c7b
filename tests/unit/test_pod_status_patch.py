"""The pod status patch: the node's report, whole, for a JSON merge patch (its lists replace the stored ones)."""

from __future__ import annotations

from cloud.edgecontroller.controller import status_patch


def test_the_report_is_the_patch() -> None:
    status = {"phase": "Running", "podIP": "10.88.0.9", "podIPs": [{"ip": "10.88.0.9"}],
              "containerStatuses": [{"name": "main", "ready": True}], "conditions": []}
    patch = status_patch(status, [])
    assert patch["podIPs"] == [{"ip": "10.88.0.9"}]
    assert patch["containerStatuses"] == [{"name": "main", "ready": True}]


def test_a_pod_without_an_address_loses_the_old_one() -> None:
    patch = status_patch({"phase": "Pending", "conditions": []}, [])
    assert patch["podIP"] is None
    assert patch["podIPs"] is None


def test_condition_transition_times_are_kept() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    new = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T00:00:00Z"}]
    patch = status_patch({"conditions": new, "podIP": "10.0.0.1"}, old)
    assert patch["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
