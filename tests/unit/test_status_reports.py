"""edgehive status gathers CloudHub's answers: one from a lone CloudHub, one per replica from replicas."""

from __future__ import annotations

from edgehive.status import HubReports


def replica(name: str, members: list[str], nodes: dict[str, bool]) -> dict[str, object]:
    return {"replica": name, "members": members,
            "nodes": {node: {"connected": up, "session": f"{name}-{node}"} for node, up in nodes.items()}}


def test_a_lone_cloudhubs_answer_is_complete() -> None:
    reports = HubReports()
    reports.add({"nodes": {"edge-1": {"connected": True}}})
    assert reports.complete()
    assert reports.nodes == {"edge-1": {"connected": True}}


def test_replicas_answers_are_complete_once_every_member_named_answered_and_their_nodes_merge() -> None:
    reports = HubReports()
    reports.add(replica("r1", ["r1", "r2"], {"edge-1": True}))
    assert not reports.complete()
    assert reports.missing() == ["r2"]
    reports.add(replica("r2", ["r1", "r2", "r3"], {"edge-2": True}))  # r2 counts a member r1 did not yet
    assert reports.missing() == ["r3"]
    reports.add(replica("r3", ["r1", "r2", "r3"], {"edge-1": False, "edge-3": True}))
    assert reports.complete()
    assert sorted(reports.nodes) == ["edge-1", "edge-2", "edge-3"]
    assert reports.nodes["edge-1"]["session"] == "r1-edge-1", "the replica holding the session wins a moved node"
