"""kubelet's event correlator (edge/edged/eventcorrelator.py): dedupe with counts, aggregation, the spam filter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge.edged.eventcorrelator import COMBINED, Correlator, Occurrence
from edge.edged.events import EventRecorder, NodeEvents, condition_events, config_wait_event, go_duration
from edge.edged.podspec import ConfigError
from schemas.events import KubeEvent, ObjectRef

POD = ObjectRef("Pod", "web", "default", "uid-1", "7", "spec.containers{main}")
OTHER_POD = ObjectRef("Pod", "db", "default", "uid-2", "9")


def occurrence(reason: str = "BackOff", message: str = "Back-off restarting failed container",
               ref: ObjectRef = POD, kind: str = "Warning") -> Occurrence:
    return Occurrence(ref, kind, reason, message)


def observed(correlator: Correlator, occ: Occurrence, now: float, **kw: float) -> KubeEvent:
    event = correlator.observe(occ, now, **kw)
    assert event is not None
    return event


def test_a_repeat_is_the_same_event_with_a_higher_count() -> None:
    correlator = Correlator("edge-1")
    first = observed(correlator, occurrence(), 1000.0)
    second = observed(correlator, occurrence(), 1030.0)
    assert (first.count, second.count) == (1, 2)
    assert second.name == first.name
    assert second.name.startswith("web.")
    assert second.first_timestamp == first.first_timestamp == "1970-01-01T00:16:40Z"
    assert second.last_timestamp == "1970-01-01T00:17:10Z"
    assert (second.namespace, second.host, second.component, second.involved) == ("default", "edge-1", "kubelet",
                                                                                  POD)


def test_a_different_message_reason_or_object_is_another_event() -> None:
    correlator = Correlator("edge-1")
    base = observed(correlator, occurrence(), 1.0)
    names = {observed(correlator, occ, 2.0).name for occ in (
        occurrence(message="something else"), occurrence(reason="Failed"), occurrence(ref=OTHER_POD))}
    assert base.name not in names
    assert len(names) == 3


def test_every_s_leaves_a_repeat_seen_too_soon_uncounted() -> None:
    correlator = Correlator("edge-1")
    assert observed(correlator, occurrence(), 100.0, every_s=10).count == 1
    assert correlator.observe(occurrence(), 105.0, every_s=10) is None
    assert observed(correlator, occurrence(), 111.0, every_s=10).count == 2


def test_more_than_ten_similar_messages_in_ten_minutes_are_combined() -> None:
    correlator = Correlator("edge-1")
    for i in range(10):
        event = observed(correlator, occurrence("Unhealthy", f"Liveness probe failed: attempt {i}"), 100.0 + i)
        assert event.count == 1
        assert not event.message.startswith(COMBINED)
    combined = observed(correlator, occurrence("Unhealthy", "Liveness probe failed: attempt 10"), 111.0)
    again = observed(correlator, occurrence("Unhealthy", "Liveness probe failed: attempt 11"), 112.0)
    assert combined.message == COMBINED + "Liveness probe failed: attempt 10"
    assert again.name == combined.name
    assert again.count == 2
    # Ten minutes later the similar messages are counted afresh.
    later = observed(correlator, occurrence("Unhealthy", "Liveness probe failed: attempt 12"), 112.0 + 601)
    assert not later.message.startswith(COMBINED)


def test_the_spam_filter_holds_back_past_the_burst_and_the_next_sent_carries_every_repeat() -> None:
    correlator = Correlator("edge-1", burst=3, refill_s=300)
    sent = [correlator.observe(occurrence(), float(t)) for t in range(5)]
    assert [e.count if e else None for e in sent] == [1, 2, 3, None, None]
    assert correlator.filtered == 2
    # Another object has a bucket of its own.
    assert correlator.observe(occurrence(ref=OTHER_POD), 5.0) is not None
    # One token back after 300 s: the event sent then counts the held-back repeats.
    assert observed(correlator, occurrence(), 305.0).count == 6


def test_the_dedupe_memory_is_bounded() -> None:
    correlator = Correlator("edge-1", cache_size=2)
    first = observed(correlator, occurrence(message="a"), 1.0)
    observed(correlator, occurrence(message="b"), 2.0)
    observed(correlator, occurrence(message="c"), 3.0)
    again = observed(correlator, occurrence(message="a"), 4.0)
    assert again.count == 1
    assert again.name != first.name


def test_a_long_message_is_cut() -> None:
    event = observed(Correlator("edge-1"), occurrence("Failed", "x" * 5000), 1.0)
    assert len(event.message) == 1024
    assert event.message.endswith("...")


def test_node_condition_events_on_first_sight_and_on_each_change() -> None:
    first = condition_events({}, {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
                                  "Ready": "True"})
    assert first == ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"]
    assert condition_events({"Ready": "True", "DiskPressure": "False"},
                            {"Ready": "False", "DiskPressure": "True"}) == ["NodeHasDiskPressure", "NodeNotReady"]
    assert condition_events({"Ready": "True"}, {"Ready": "True"}) == []


def test_durations_as_go_prints_them() -> None:
    assert go_duration(1.5) == "1.5s"
    assert go_duration(0.8321) == "832.1ms"
    assert go_duration(125.25) == "2m5.25s"
    assert go_duration(0.000012) == "12µs"


def recorded(run: Callable[[EventRecorder], None], node: str = "edge-1") -> list[KubeEvent]:
    """The events ``run`` records through a recorder of ``node``, as its thread hands them on."""
    sent: list[KubeEvent] = []
    recorder = EventRecorder(node, sent.append, clock=lambda: 1000.0)
    recorder.start()
    run(recorder)
    recorder.stop()  # the thread hands on what was queued before it ends
    return sent


def test_a_changed_boot_id_is_a_reboot(tmp_path: Path) -> None:
    boot_file = tmp_path / "edged" / "boot_id"
    first = recorded(lambda r: NodeEvents(r, boot_file).starting("boot-a"))
    assert [(e.reason, e.type) for e in first] == [("Starting", "Normal")]  # no boot id before: no reboot
    assert [(e.reason, e.message) for e in recorded(lambda r: NodeEvents(r, boot_file).starting("boot-a"))] == [
        ("Starting", "Starting kubelet.")]
    again = recorded(lambda r: NodeEvents(r, boot_file).starting("boot-b"))
    assert [(e.reason, e.type, e.message) for e in again] == [
        ("Starting", "Normal", "Starting kubelet."),
        ("Rebooted", "Warning", "Node edge-1 has been rebooted, boot id: boot-b")]
    assert (again[1].namespace, again[1].involved.kind, again[1].involved.name, again[1].involved.uid) == (
        "default", "Node", "edge-1", "edge-1")


def test_a_missing_volume_source_is_failed_mount_and_a_missing_env_source_is_failed() -> None:
    pod = {"metadata": {"namespace": "shop"}, "spec": {"volumes": [
        {"name": "opt", "configMap": {"name": "maybe", "optional": True}},
        {"name": "keys", "projected": {"sources": [{"secret": {"name": "tls"}}]}}]}}
    assert config_wait_event(pod, ConfigError('secret "tls" not found'), lambda _key: None) == (
        "FailedMount", 'MountVolume.SetUp failed for volume "keys" : secret "tls" not found')
    assert config_wait_event(pod, ConfigError('configmap "env" not found'), lambda _key: {}) == (
        "Failed", 'Error: configmap "env" not found')
