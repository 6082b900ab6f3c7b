"""Device status writes coalesced per device (cloud/devicecontroller/coalescer.py) and the writers that drain
them (statuswriters.py), without a network: a fake clock for the pure map, a recording Kube for the writers.

The real API server side (merge patches of Device.status and DeviceStatus) is covered by
tests/integration/test_devices.py and test_device_status_object.py, which go through these writers.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any, cast

import pytest

from cloud.devicecontroller.coalescer import MAX_ACKS, Coalescer, Key, merge_status
from cloud.devicecontroller.controller import DeviceControllerSettings
from cloud.devicecontroller.statusobject import StatusObject
from cloud.devicecontroller.statuswriters import Ack, StatusWriters
from cloud.kube import Kube, KubeError
from schemas.envelope import Envelope, ErrorBody, Group, Op, Send
from schemas.resource import ResourceKey

X = Key("ns1", "thermo-1", "device")
Y = Key("ns1", "thermo-2", "device")
DEVICE = {"metadata": {"name": "thermo-1", "namespace": "ns1", "uid": "u-1"}}


def twin(prop: str, value: str) -> dict[str, Any]:
    return {"propertyName": prop, "reported": {"value": value, "metadata": {"type": "int"}}}


def report(value: str, **extra: str) -> dict[str, Any]:
    return {"twins": [twin("t", value), twin("h", str(int(value) * 2))], **extra}


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = apply_merge_patch(out.get(name), value)
    return out


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def coalescer(clock: Clock | None = None) -> Coalescer[str]:
    return Coalescer(clock=clock or Clock(), backoff=lambda failures: 2.0 ** failures)


# -- merging: one write ends as the reports written one after the other would --------------------------


@pytest.mark.parametrize(("older", "newer"), [
    (report("1", state="online", lastOnlineTime="2026-12-04T16:00:00Z"), report("2")),
    (report("1"), report("2", state="offline")),
    (report("1", state="online"), {"twins": []}),
    ({"twins": [twin("t", "1")]}, {"twins": [twin("h", "9")], "lastOnlineTime": "2026-12-04T16:00:05Z"}),
])
def test_merged_patch_ends_as_the_two_patches_in_order(older: dict[str, Any], newer: dict[str, Any]) -> None:
    before = {"spec": {}, "status": {"twins": [twin("t", "0")], "state": "unknown", "extensions": {"a": "b"}}}
    in_turn = apply_merge_patch(apply_merge_patch(before, {"status": older}), {"status": newer})
    assert apply_merge_patch(before, {"status": merge_status(older, newer)}) == in_turn


def test_a_nested_map_is_refused_rather_than_half_merged() -> None:
    with pytest.raises(ValueError, match="extensions"):
        merge_status({"extensions": {"a": "1"}}, {"extensions": {"b": "2"}})


def test_reports_for_a_waiting_device_join_its_write_newest_last() -> None:
    pending = coalescer()
    assert pending.put(X, DEVICE, report("1", state="online"), "a") is False
    assert pending.put(Y, DEVICE, report("5"), "y") is False
    assert pending.put(X, {**DEVICE, "v": 2}, report("2"), "b") is True
    assert pending.put(X, {**DEVICE, "v": 3}, report("3"), "c") is True
    assert pending.coalesced == 2
    assert len(pending) == 2
    write = pending.take_ready()
    assert write is not None
    assert write.key == X
    assert write.patch == report("3", state="online")
    assert write.acks == ("a", "b", "c")
    assert write.reports == 3
    assert write.device == {**DEVICE, "v": 3}  # the newest view of the Device
    second = pending.take_ready()
    assert second is not None
    assert second.key == Y
    assert second.acks == ("y",)
    assert pending.take_ready() is None


def test_acks_kept_are_capped_newest_first() -> None:
    pending = coalescer()
    for n in range(MAX_ACKS + 10):
        pending.put(X, DEVICE, report("1"), str(n))
    write = pending.take_ready()
    assert write is not None
    assert len(write.acks) == MAX_ACKS
    assert write.acks[-1] == str(MAX_ACKS + 9)
    assert write.acks[0] == "10"
    assert write.reports == MAX_ACKS + 10


# -- one writer per device ------------------------------------------------------------------------


def test_a_device_being_written_is_not_handed_to_a_second_writer() -> None:
    pending = coalescer()
    pending.put(X, DEVICE, report("1"), "a")
    first = pending.take_ready()
    assert first is not None
    pending.put(X, DEVICE, report("2"), "b")  # arrives while the first write is being made
    pending.put(Y, DEVICE, report("7"), "y")
    other = pending.take_ready()
    assert other is not None
    assert other.key == Y
    assert pending.take_ready() is None
    pending.done(first)
    after = pending.take_ready()
    assert after is not None
    assert after.key == X
    assert after.patch == report("2")
    assert after.acks == ("b",)
    assert pending.coalesced == 0  # it did not join a write in progress: that one was already made


def test_a_blocking_take_wakes_for_a_put_and_for_close() -> None:
    pending: Coalescer[str] = Coalescer()
    taken: list[Any] = []
    first, done = threading.Event(), threading.Event()

    def take_twice() -> None:
        taken.append(pending.take(timeout=30))
        first.set()
        taken.append(pending.take(timeout=30))
        done.set()

    thread = threading.Thread(target=take_twice, daemon=True)
    thread.start()
    pending.put(X, DEVICE, report("1"), "a")
    assert first.wait(10)
    pending.close()
    assert done.wait(10)
    assert taken[0] is not None
    assert taken[0].acks == ("a",)
    assert taken[1] is None
    assert pending.closed


# -- failures ------------------------------------------------------------------------------------


def test_a_failed_write_waits_its_backoff_under_the_newer_report() -> None:
    clock = Clock()
    pending = coalescer(clock)
    pending.put(X, DEVICE, report("1", state="online"), "a")
    first = pending.take_ready()
    assert first is not None
    pending.put(X, DEVICE, report("2"), "b")  # newer, while the write of "1" fails
    assert pending.failed(first) == 2.0
    assert pending.take_ready() is None  # backing off
    clock.now += 2.0
    retry = pending.take_ready()
    assert retry is not None
    assert retry.patch == report("2", state="online")  # the newer values won; the older state still stands
    assert retry.acks == ("a", "b")
    assert retry.failures == 1
    assert pending.failed(retry) == 4.0  # a second failure in a row waits longer
    pending.put(X, DEVICE, report("3"), "c")  # joins the write backing off: still waits its turn
    clock.now += 3.9
    assert pending.take_ready() is None
    clock.now += 0.1
    last = pending.take_ready()
    assert last is not None
    assert last.patch == report("3", state="online")
    assert last.acks == ("a", "b", "c")


def test_a_dropped_write_leaves_the_newer_report_waiting() -> None:
    pending = coalescer()
    pending.put(X, DEVICE, report("1"), "a")
    first = pending.take_ready()
    assert first is not None
    pending.put(X, DEVICE, report("2"), "b")
    pending.dropped(first)
    after = pending.take_ready()
    assert after is not None
    assert after.acks == ("b",)
    assert after.patch == report("2")


# -- the writers: answers only once written --------------------------------------------------------


class ApiServer:
    """The Kube calls StatusObject makes: answers each patch with the next of ``answers`` (None: written)."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.patches: list[dict[str, Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def patch_custom_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.entered.set()
        assert self.release.wait(10)
        self.patches.append(patch["status"])
        status = self.answers.pop(0) if self.answers else None
        if status is not None:
            raise KubeError(status, f"answered {status}")
        return {}


def request(name: str = "thermo-1") -> Envelope:
    return Envelope(node="n1", src="edgehub", group=Group.TWIN, op=Op.UPDATE,
                    res=ResourceKey("ns1", "devicestatus", name), body={})


class Sent:
    def __init__(self) -> None:
        self.answers: list[Envelope] = []
        self.changed = threading.Condition()

    def __call__(self, sends: Any) -> None:
        with self.changed:
            self.answers.extend(s.envelope for s in sends)
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[Envelope]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.answers) >= count, timeout=10), self.answers
            return list(self.answers)


def writers(kube: ApiServer, sent: Sent, clock: Clock | None = None, workers: int = 1) -> StatusWriters:
    return StatusWriters(StatusObject(cast(Kube, kube), "device"), sent, lambda e: Send("cloudhub", e), workers,
                         module="devicecontroller", coalescer=Coalescer(clock=clock or Clock(), backoff=lambda n: 1.0))


def put(target: StatusWriters, value: str, answer_refused: bool = False) -> Envelope:
    asked = request()
    answer = asked.error("devicecontroller", 422, "refused: t") if answer_refused else asked.reply(
        "devicecontroller", {"ok": True})
    target.put("ns1", "thermo-1", DEVICE, report(value), Ack(asked, answer))
    return asked


def test_every_report_is_answered_once_the_write_carrying_it_succeeded() -> None:
    kube, sent = ApiServer(), Sent()
    target = writers(kube, sent)
    a, b = put(target, "1"), put(target, "2", answer_refused=True)
    write = target.pending.take_ready()
    assert write is not None
    assert sent.answers == []
    target.write(write)
    assert kube.patches == [report("2")]
    assert [(e.parent, e.op) for e in sent.answers] == [(a.id, Op.RESPONSE), (b.id, Op.ERROR)]
    assert ErrorBody.read(sent.answers[1].body).code == 422  # its own answer: a value of it was refused


def test_a_transient_failure_answers_nothing_and_tries_again() -> None:
    clock = Clock()
    kube, sent = ApiServer(503), Sent()
    target = writers(kube, sent, clock)
    a = put(target, "1")
    write = target.pending.take_ready()
    assert write is not None
    target.write(write)
    assert sent.answers == []  # not written, not acknowledged: the node still holds it
    b = put(target, "2")
    clock.now += 1.0
    retry = target.pending.take_ready()
    assert retry is not None
    target.write(retry)
    assert kube.patches == [report("1"), report("2")]
    assert [e.parent for e in sent.answers] == [a.id, b.id]
    assert all(e.op == Op.RESPONSE for e in sent.answers)


@pytest.mark.parametrize("status", [404, 422])
def test_a_write_refused_for_good_answers_each_report_with_the_error(status: int) -> None:
    kube, sent = ApiServer(status), Sent()
    target = writers(kube, sent)
    a, b = put(target, "1"), put(target, "2")
    write = target.pending.take_ready()
    assert write is not None
    target.write(write)
    assert [(e.parent, e.op, ErrorBody.read(e.body).code) for e in sent.answers] == [
        (a.id, Op.ERROR, status), (b.id, Op.ERROR, status)]
    assert len(target.pending) == 0
    assert target.pending.take_ready() is None


def test_the_threads_coalesce_what_arrives_during_a_write() -> None:
    kube, sent = ApiServer(), Sent()
    kube.release.clear()
    target = writers(kube, sent, workers=2)
    target.pending.clock = time.monotonic
    target.start()
    try:
        first = put(target, "1")
        assert kube.entered.wait(10)  # a writer is in the API call for "1"
        later = [put(target, str(n)) for n in range(2, 6)]
        kube.release.set()
        answers = sent.wait_for(5)
        assert kube.patches == [report("1"), report("5")]  # two writes for five reports, the newest last
        assert [e.parent for e in answers] == [first.id, *(r.id for r in later)]
        assert target.pending.coalesced == 3
    finally:
        target.close()


def test_status_writers_setting_needs_at_least_one() -> None:
    assert DeviceControllerSettings().status_writers == 4
    with pytest.raises(ValueError, match="status_writers"):
        DeviceControllerSettings(status_writers=0)
