"""The workloads bench's breakdown: podman's times read to the nanosecond, stages from consecutive marks."""

from __future__ import annotations

from edgehive.bench.podtrace import PodTrace, _time_ns
from schemas import kinds
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey

SECOND = 1_000_000_000


def test_podman_times_keep_their_nanoseconds() -> None:
    assert _time_ns("1970-01-01T00:00:01.000000002Z") == SECOND + 2
    assert _time_ns("1970-01-01T01:00:01.5+01:00") == SECOND + SECOND // 2
    assert _time_ns("0001-01-01T00:00:00Z") == 0
    assert _time_ns(None) == 0


def test_stages_are_the_spans_between_marks_and_the_first_mark_counts() -> None:
    trace = PodTrace("bench")
    trace.on_pod({"metadata": {"name": "d-1", "uid": "u1"}, "spec": {}}, 1 * SECOND)
    trace.on_pod({"metadata": {"name": "d-1", "uid": "u1"}, "spec": {"nodeName": "n"}}, 3 * SECOND)
    trace.on_pod({"metadata": {"name": "d-1", "uid": "u1"}, "spec": {"nodeName": "n"}}, 9 * SECOND)
    down = Envelope(node="n", src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                    res=ResourceKey("bench", kinds.POD, "d-1"), body={}, ts=3500)
    trace._on_down(down, 4 * SECOND)
    trace._on_down(down, 8 * SECOND)  # a resend: later marks do not move the first
    other = Envelope(node="n", src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                     res=ResourceKey("elsewhere", kinds.POD, "d-1"), body={}, ts=1)
    trace._on_down(other, 1)  # another namespace's pod of the same name is not this one
    found = trace.breakdown("d-")
    assert found["scheduler"]["p50"] == 2000
    assert found["edgecontroller"]["p50"] == 500
    assert found["cloudhub"]["p50"] == 500
    assert "token" not in found  # no pod has both of its marks
    assert trace.breakdown("x-") == {}


def test_podman_marks_are_matched_by_the_pod_uid() -> None:
    trace = PodTrace("bench")
    trace.on_pod({"metadata": {"name": "p", "uid": "u1"}, "spec": {"nodeName": "n"}}, SECOND)
    trace.read_podman(lambda: [
        {"Pod": "pod1", "IsInfra": True, "Created": "1970-01-01T00:00:02Z"},
        {"Pod": "pod1", "IsInfra": False, "Created": "1970-01-01T00:00:02.25Z",
         "State": {"StartedAt": "1970-01-01T00:00:03Z"}, "Config": {"Labels": {"io.edgehive.uid": "u1"}}},
        {"Pod": "pod2", "IsInfra": False, "Created": "1970-01-01T00:00:09Z",
         "State": {"StartedAt": "1970-01-01T00:00:09Z"}, "Config": {"Labels": {"io.edgehive.uid": "other"}}},
    ])
    found = trace.breakdown("p")
    assert found["container_create"]["p50"] == 250
    assert found["container_start"]["p50"] == 750
