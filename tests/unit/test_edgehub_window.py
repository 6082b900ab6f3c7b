"""EdgeHub's upstream window: an answer frees its entry's slot even when a newer entry replaced it meanwhile; the
sender thread packs what the window lets go for a cloud that takes batches, and sends a refused batch's members
again one by one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.edgehub.hub import EdgeHub, EdgeHubSettings
from runtime.bus import Bus, BusSettings
from runtime.connsettings import ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.batch import Batch
from schemas.envelope import Envelope, Group, Op, Send, decode
from schemas.link import KeepaliveAnswer
from schemas.resource import ResourceKey

NODE = "edge-1"
STATUS = ResourceKey("default", "devicestatus", "mb-1")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EdgeHub]:
    # A bus that is never started: the handlers under test only queue and decide, they send nothing here.
    bus = Bus(BusSettings(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="edgehub"), module="edgehub",
                          side=topics.Side.EDGE, node=NODE))
    h = EdgeHub(EdgeHubSettings(node=NODE, outbox=str(tmp_path / "outbox.db")), bus)
    yield h
    h.outbox.close()


def status(value: str) -> Envelope:
    return Envelope(node=NODE, src="devicetwin", group=Group.TWIN, op=Op.UPDATE, res=STATUS,
                    body={"status": {"twins": [{"propertyName": "p0", "reported": {"value": value}}]}})


def answer(parent: Envelope) -> Envelope:
    return Envelope(node=NODE, src="cloudhub", group=Group.TWIN, op=Op.RESPONSE, parent=parent.id, body={"ok": True})


def test_the_answer_to_an_entry_replaced_in_flight_frees_its_slot(hub: EdgeHub) -> None:
    older, newer = status("1"), status("2")
    hub.on_upstream(older, "")
    hub.router.window.inflight[older.id] = time.monotonic()  # the sender sent it (as _sender does)
    hub.on_upstream(newer, "")  # the same device's newer status replaces it in the outbox
    assert [e.msg_id for e in hub.outbox.after(0, 10)] == [newer.id]

    hub.on_down(answer(older), "")
    assert older.id not in hub.router.window.inflight  # not held until resend_s: the window has room again at once
    assert hub.bus.counters.get("upstream_acked_replaced") == 1
    assert hub.bus.counters.get("upstream_acked") == 0
    assert [e.msg_id for e in hub.outbox.after(0, 10)] == [newer.id]  # the newer one still goes up

    hub.router.window.inflight[newer.id] = time.monotonic()
    hub.on_down(answer(newer), "")
    assert hub.router.window.inflight == {}
    assert hub.outbox.count() == 0
    assert hub.bus.counters.get("upstream_acked") == 1


def test_an_answer_to_something_not_in_flight_changes_no_slot(hub: EdgeHub) -> None:
    sent = status("1")
    hub.on_upstream(sent, "")
    hub.router.window.inflight[sent.id] = time.monotonic()
    hub.on_down(answer(status("other")), "")
    assert list(hub.router.window.inflight) == [sent.id]
    assert hub.bus.counters.get("upstream_acked_replaced") == 0


def test_a_window_or_resend_period_that_cannot_work_is_refused_by_name() -> None:
    assert EdgeHubSettings(node="n").upstream_window == 200
    with pytest.raises(ValueError, match="upstream_window must be at least 1, not 0"):
        EdgeHubSettings(node="n", upstream_window=0)
    with pytest.raises(ValueError, match="resend_s must be positive, not 0"):
        EdgeHubSettings(node="n", resend_s=0)


def device_status(name: str) -> Envelope:
    return Envelope(node=NODE, src="devicetwin", group=Group.TWIN, op=Op.UPDATE,
                    res=ResourceKey("default", "devicestatus", name), body={"status": {"twins": []}})


def test_the_sender_packs_for_a_cloud_that_takes_batches_and_resends_a_refused_ones_members_alone(
        hub: EdgeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[bytes] = []
    arrived = threading.Condition()

    def publish(topic: str, payload: bytes, **_: object) -> None:
        assert topic == topics.link_up(NODE)
        with arrived:
            published.append(payload)
            arrived.notify_all()

    def wait_for(count: int) -> list[bytes]:
        with arrived:
            assert arrived.wait_for(lambda: len(published) >= count, timeout=30), published
            return list(published)

    monkeypatch.setattr(hub.bus.connection, "publish", publish)
    with hub._wake:
        (hello,) = hub.router.link_changed(True, "test").sends
    assert isinstance(hello, Send)
    hub.on_down(hello.envelope.reply("cloudhub", KeepaliveAnswer(65536).as_body()), "")
    sent = [device_status(f"d{i}") for i in range(5)]
    for envelope in sent:
        hub.on_upstream(envelope, "")
    sender = hub._threads[0]
    sender.start()
    try:
        (payload,) = wait_for(1)
        carrier = decode(payload)
        assert Batch.parse(carrier).members(1024 * 1024) == sent
        assert sorted(hub.router.window.inflight) == sorted(e.id for e in sent)

        hub.on_down(Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=Op.ERROR, parent=carrier.id,
                             body={"code": 400, "reason": "refused"}), "")
        again = wait_for(6)[1:]
        assert sorted(decode(p).id for p in again) == sorted(e.id for e in sent)  # each alone, with its id
        assert hub.bus.counters.get("upstream_resent") == 5
        assert hub.outbox.count() == 5  # owed until each is answered
    finally:
        hub._stop.set()
        hub._poke()
        sender.join(timeout=10)
