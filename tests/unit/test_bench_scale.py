"""The scale bench's pure parts: its small MQTT codec, a simulated node's answers (MetaManager's own, over the
in-memory store), and the bench's arithmetic."""

import asyncio

import pytest

from edgehive.bench.mqtt311 import (
    CONNECT,
    PUBLISH,
    connect_packet,
    encode_length,
    parse_publish,
    puback_packet,
    publish_packet,
    read_packet,
    subscribe_packet,
)
from edgehive.bench.procfs import busy_cores, cpu_seconds, parse_smaps_rollup
from edgehive.bench.scale_cloud import request_counts
from edgehive.bench.scale_report import match_latencies, ratio, resynced_at
from edgehive.bench.simnode import Note, SimNode, configmap_key
from schemas import kinds
from schemas.envelope import Envelope, Group, Op, decode
from schemas.reports import LeaseHeartbeat
from schemas.resource import ResourceKey

NODE = "sim-0007"
POD = ResourceKey("scale", kinds.POD, "sim-0007-p0")


def _pod(rv: str, uid: str = "u-1", name: str = "sim-0007-p0") -> Envelope:
    body = {"metadata": {"name": name, "namespace": "scale", "uid": uid, "resourceVersion": rv}, "spec": {}}
    return Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                    res=ResourceKey("scale", kinds.POD, name), rv=rv, body=body)


def _held(node: SimNode, key: ResourceKey = POD) -> tuple[str, str, str | None] | None:
    """(kind, resourceVersion, UID) of what the node's store holds under ``key``."""
    stored = node.store.get(key)
    return None if stored is None else (stored.key.kind, stored.rv, stored.uid)


def _listing(kind: str, after: str = "", limit: int = 500) -> Envelope:
    return Envelope(node=NODE, src="edgecontroller", group=Group.META, op=Op.QUERY,
                    body={"list": kind, "after": after, "limit": limit})


# -- MQTT -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("length", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length_follows_the_spec_examples(length: int, encoded: bytes) -> None:
    assert encode_length(length) == encoded


def test_a_length_mqtt_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        encode_length(268_435_456)


def test_connect_keeps_the_session_and_leaves_a_retained_qos1_will_like_the_bridge() -> None:
    packet = connect_packet("edgehive-bridge-sim-0007", 10, "edgehive/link/sim-0007/up", b"gone", clean=False)
    assert packet[0] == CONNECT << 4
    body = packet[2:]
    assert packet[1] == len(body)
    assert body[:6] == b"\x00\x04MQTT"
    assert body[6] == 4
    assert body[7] == 0x2C  # will retained (0x20), will QoS 1 (0x08), will flag (0x04); not clean (no 0x02)
    assert int.from_bytes(body[8:10], "big") == 10
    assert body.endswith(b"\x00\x19edgehive/link/sim-0007/up\x00\x04gone")
    assert connect_packet("x", 10, "t", b"", clean=True)[2 + 7] == 0x2E


def test_subscribe_and_puback_packets() -> None:
    assert subscribe_packet(1, "a/b") == b"\x82\x08\x00\x01\x00\x03a/b\x01"
    assert puback_packet(513) == b"\x40\x02\x02\x01"


def test_a_publish_reads_back_through_the_stream_reader() -> None:
    payload = b"p" * 300  # a two-byte remaining length
    packet = publish_packet("edgehive/link/sim-0007/up", payload, 42)

    async def read() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(packet + puback_packet(7))
        reader.feed_eof()
        first = await read_packet(reader)
        second = await read_packet(reader)
        assert second == (0x40, b"\x00\x07")
        with pytest.raises(asyncio.IncompleteReadError):
            await read_packet(reader)
        return first

    first, body = asyncio.run(read())
    assert first >> 4 == PUBLISH
    assert (first >> 1) & 3 == 1
    parsed = parse_publish(first, body)
    assert (parsed.topic, parsed.packet_id, parsed.payload) == ("edgehive/link/sim-0007/up", 42, payload)


def test_a_qos0_publish_has_no_packet_id() -> None:
    body = b"\x00\x01t" + b"data"
    assert parse_publish(PUBLISH << 4, body).packet_id is None
    assert parse_publish(PUBLISH << 4, body).payload == b"data"


# -- a simulated node answers as MetaManager and EdgeHub do ----------------------------------------------------------

def test_an_object_is_stored_and_acknowledged_with_its_message_id() -> None:
    node = SimNode(NODE)
    sent = _pod("10")
    replies, note = node.on_down(sent)
    assert len(replies) == 1
    reply = decode(replies[0].encode())  # what CloudHub receives must be a valid envelope
    assert (reply.op, reply.parent, reply.node, reply.src) == (Op.RESPONSE, sent.id, NODE, "metamanager")
    assert reply.res == POD
    assert reply.body == {"outcome": "applied"}
    assert note == Note("got", str(POD), "10", "applied")
    assert _held(node) == (kinds.POD, "10", "u-1")


def test_an_older_or_equal_version_is_acknowledged_as_stale_and_not_applied() -> None:
    node = SimNode(NODE)
    node.on_down(_pod("10"))
    for rv in ("10", "9"):
        replies, note = node.on_down(_pod(rv))
        assert replies[0].body == {"outcome": "stale"}
        assert note is not None
        assert note.outcome == "stale"
    held = _held(node)
    assert held is not None
    assert held[1] == "10"
    # etcd's revisions are global: an older incarnation's update (redelivered late) is refused, whatever its UID
    assert node.on_down(_pod("9", uid="u-0"))[0][0].body == {"outcome": "stale"}
    node.on_down(_pod("11", uid="u-2"))  # the same name recreated: a greater version
    assert _held(node) == (kinds.POD, "11", "u-2")


def test_a_delete_naming_another_uid_leaves_the_object() -> None:
    node = SimNode(NODE)
    node.on_down(_pod("10"))
    delete = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.DELETE, res=POD, rv="11",
                      body={"metadata": {"name": POD.name, "namespace": "scale", "uid": "u-other"}})
    assert node.on_down(delete)[0][0].body == {"outcome": "absent"}
    assert _held(node) is not None
    assert node.on_down(delete.with_body({"metadata": {"uid": "u-1"}}))[0][0].body == {"outcome": "deleted"}
    assert _held(node) is None


def test_an_object_whose_metadata_names_another_key_is_refused_with_400() -> None:
    node = SimNode(NODE)
    wrong = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT, res=POD, rv="1",
                     body={"metadata": {"name": "other", "namespace": "scale"}})
    replies, note = node.on_down(wrong)
    assert replies[0].op == Op.ERROR
    assert replies[0].parent == wrong.id
    assert replies[0].body["code"] == 400
    assert note is not None
    assert note.what == "refused"
    assert node.store.count() == 0


def test_another_nodes_envelope_is_dropped_without_an_answer() -> None:
    other = Envelope(node="sim-0008", src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                     res=POD, rv="1", body={"metadata": {"name": POD.name, "namespace": "scale"}})
    replies, _ = SimNode(NODE).on_down(other)
    assert replies == []


def test_the_listing_pages_through_one_kind_in_key_order() -> None:
    node = SimNode(NODE)
    for i in (2, 0, 1):
        node.on_down(_pod(str(10 + i), uid=f"u-{i}", name=f"sim-0007-p{i}"))
    node.on_down(Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                          res=ResourceKey("scale", kinds.CONFIGMAP, "cfg-sim-0007"), rv="5",
                          body={"metadata": {"name": "cfg-sim-0007", "namespace": "scale"}}))
    query = _listing(kinds.POD, limit=2)
    replies, note = node.on_down(query)
    page = replies[0]
    assert page.parent == query.id
    assert page.op == Op.RESPONSE
    assert [item["key"] for item in page.body["items"]] == ["scale/pod/sim-0007-p0", "scale/pod/sim-0007-p1"]
    assert page.body["items"][0] == {"key": "scale/pod/sim-0007-p0", "rv": "10", "uid": "u-0"}
    assert page.body["next"] == "scale/pod/sim-0007-p1"
    assert note == Note("listed", kinds.POD, last=False)
    replies, note = node.on_down(_listing(kinds.POD, after=page.body["next"], limit=2))
    assert [item["key"] for item in replies[0].body["items"]] == ["scale/pod/sim-0007-p2"]
    assert replies[0].body["next"] is None
    assert note == Note("listed", kinds.POD, last=True)
    secrets = node.on_down(_listing(kinds.SECRET))[0][0]
    assert secrets.body == {"items": [], "next": None}


def test_a_listing_with_a_bad_limit_is_refused() -> None:
    replies, _ = SimNode(NODE).on_down(_listing(kinds.POD, limit=501))
    assert replies[0].op == Op.ERROR
    assert replies[0].body["code"] == 400


def test_the_outbox_keeps_entries_until_answered_and_statuses_coalesce() -> None:
    node = SimNode(NODE)
    registration = node.register()
    assert node.register() is registration  # queued once
    first = node.status(now=1000.0, clock=0.0)
    second = node.status(now=1400.0, clock=400.0)  # the report period passed: a status again, replacing the first
    assert second.res is not None
    assert second.res.kind == kinds.NODESTATUS
    assert list(node.outbox) == [registration.id, second.id]
    assert first.id not in node.outbox
    assert [p.envelope.id for p in node.due(now=0.0)] == [registration.id, second.id]
    for pending in node.outbox.values():
        pending.sent_at = 100.0
    assert node.due(now=105.0) == []
    assert len(node.due(now=110.0)) == 2
    node.link_lost()
    assert len(node.due(now=100.0)) == 2  # everything again when the link returns
    answer = registration.reply("edgecontroller", {"ok": True})
    assert node.on_down(answer) == ([], Note("acked", kinds.NODE))
    assert node.registered
    assert list(node.outbox) == [second.id]
    assert node.on_down(answer) == ([], Note("late"))  # a second answer to the same entry changes nothing
    assert list(node.outbox) == [second.id]
    assert node.on_down(first.reply("edgecontroller", {"ok": True})) == ([], Note("late"))  # replaced before it came


def test_between_reports_an_unchanged_status_goes_as_a_lease_heartbeat_with_the_conditions() -> None:
    node = SimNode(NODE)
    status = node.status(now=1000.0, clock=0.0)
    beats = [node.status(now=1000.0 + t, clock=t) for t in (10.0, 20.0)]
    assert [b.res.kind for b in beats if b.res is not None] == [kinds.LEASE, kinds.LEASE]
    assert list(node.outbox) == [status.id, beats[1].id]  # the newer heartbeat replaced the older
    conditions = LeaseHeartbeat.parse(beats[1].body).conditions
    assert conditions is not None
    assert {c["type"]: c["status"] for c in conditions}["Ready"] == "True"


def test_a_refused_registration_leaves_the_node_unregistered() -> None:
    node = SimNode(NODE)
    registration = node.register()
    assert node.on_down(registration.error("edgecontroller", 403, "no")) == ([], Note("refused", kinds.NODE))
    assert not node.registered
    assert not node.outbox


def test_registration_and_status_are_what_edged_sends() -> None:
    node = SimNode(NODE)
    registration, status = node.register(), node.status()
    assert (registration.src, registration.op, registration.res) == ("edged", Op.INSERT,
                                                                      ResourceKey(None, kinds.NODE, NODE))
    assert registration.body["metadata"]["labels"]["node-role.kubernetes.io/edge"] == ""
    assert (status.op, status.res) == (Op.UPDATE, ResourceKey(None, kinds.NODESTATUS, NODE))
    ready = [c for c in status.body["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert node.keepalive().body == {"outbox": 2}


# -- the bench's arithmetic -------------------------------------------------------------------------------------------

def test_latency_runs_to_the_first_receipt_of_that_version_or_a_newer_one() -> None:
    key = configmap_key(NODE)
    writes = [(key, 10, 1_000), (key, 12, 2_000), (key, 20, 3_000), ("other", 1, 0)]
    receipts = {key: [(10, 1_500), (13, 2_700), (12, 2_900)]}
    latencies, missing = match_latencies(writes, receipts)
    assert latencies == [500, 700]  # 12 was replaced by 13 before it left, so 13's arrival counts for it
    assert missing == 2


def test_a_node_is_resynced_only_when_every_part_happened_after_the_herd_began() -> None:
    listed = {kinds.POD: 150, kinds.CONFIGMAP: 160, kinds.SECRET: 170, kinds.PVC: 165, kinds.PV: 168}
    assert resynced_at(100, session=120, listed=listed, holds=200) == 200
    assert resynced_at(100, session=120, listed=listed, holds=130) == 170
    assert resynced_at(100, session=90, listed=listed, holds=200) is None  # the session from before the herd
    assert resynced_at(100, session=120, listed={kinds.POD: 150}, holds=200) is None
    assert resynced_at(100, session=120, listed=listed, holds=None) is None


def test_ratio_needs_both_figures_and_a_baseline_above_zero() -> None:
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(None, 200.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(1.0, None) is None


def test_cpu_seconds_from_a_stat_line_whose_name_holds_spaces_and_parentheses() -> None:
    stat = "4242 (python3 (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 100 1000 10"
    assert cpu_seconds(stat, 100) == 3.0


def test_rollup_gives_rss_and_pss() -> None:
    text = "55f-7ff ---p 00000000 00:00 0 [rollup]\nRss:   31624 kB\nPss:   12218 kB\nPss_Anon:  8100 kB\n"
    memory = parse_smaps_rollup(text)
    assert (memory.rss_kb, memory.pss_kb) == (31624, 12218)
    with pytest.raises(ValueError, match="not a smaps_rollup"):
        parse_smaps_rollup("VmRSS: 1 kB\n")


def test_busy_cores_counts_everything_but_idle_and_iowait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    before = [100, 0, 100, 700, 100, 0, 0, 0]
    after = [400, 0, 200, 900, 100, 0, 0, 0]  # 400 busy ticks of 600
    assert busy_cores(before, after) == pytest.approx(2 * 400 / 600)


def test_request_counts_sum_the_api_servers_counters_by_verb_and_resource() -> None:
    metrics = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",contentType="application/json",dry_run="",group="",\
resource="nodes",scope="resource",subresource="status",verb="PATCH",version="v1"} 1500
apiserver_request_total{code="409",component="apiserver",contentType="application/json",dry_run="",group="",\
resource="nodes",scope="resource",subresource="status",verb="PATCH",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",contentType="application/json",dry_run="",group="",\
resource="nodes",scope="resource",subresource="",verb="GET",version="v1"} 1.2e+03
apiserver_request_duration_seconds_bucket{resource="nodes",verb="GET",le="0.05"} 99
"""
    counts = request_counts(metrics)  # the backslashes above join each sample onto one line, as the server sends it
    assert counts == {"PATCH nodes/status": 1503, "GET nodes": 1200}
