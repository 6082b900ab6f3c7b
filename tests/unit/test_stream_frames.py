"""Stream frames, kubelet log requests and the per-stream flow control: parsing once, refusing bad input."""

from __future__ import annotations

import threading

import msgpack
import pytest

from cloud.kubeletendpoint import endpoint_repair, kubelet_endpoint
from runtime.address import Address
from runtime.streamflow import Inbox, SendWindow, StreamEnded, StreamIdle
from schemas import topics
from schemas.fields import BodyError
from schemas.streamframe import CHUNK, Frame, FrameError, Kind, decode
from schemas.streamrequest import LogRequest, RequestRefused, log_request

SID = "0123456789abcdef"


def test_frames_round_trip() -> None:
    for frame in (Frame("edge-1", SID, Kind.OPEN, credit=1000, req={"op": "containerLogs"}),
                  Frame("edge-1", SID, Kind.DATA, seq=7, data=b"\x00line\n"),
                  Frame("edge-1", SID, Kind.CREDIT, credit=5),
                  Frame("edge-1", SID, Kind.ERROR, code=404, reason="pod x is not on node edge-1")):
        assert decode(frame.encode()) == frame


@pytest.mark.parametrize(("raw", "why"), [
    ({"v": 2, "node": "edge-1", "sid": SID, "k": "data"}, "version"),
    ({"v": 1, "node": "Edge_1", "sid": SID, "k": "data"}, "node"),
    ({"v": 1, "node": "edge-1", "sid": "../x", "k": "data"}, "sid"),
    ({"v": 1, "node": "edge-1", "sid": SID, "k": "shout"}, "k:"),
    ({"v": 1, "node": "edge-1", "sid": SID, "k": "data", "seq": -1}, "seq"),
    ({"v": 1, "node": "edge-1", "sid": SID, "k": "credit", "credit": True}, "credit"),
    ({"v": 1, "node": "edge-1", "sid": SID, "k": "data", "data": "text"}, "data"),
    ({"v": 1, "node": "edge-1", "sid": SID, "k": "data", "data": b"x" * (CHUNK + 1)}, "data"),
    ({"v": 1, "node": "edge-1", "sid": SID, "k": "open", "req": []}, "req"),
])
def test_bad_frames_are_refused_with_the_field_named(raw: dict[str, object], why: str) -> None:
    with pytest.raises(FrameError, match=why):
        decode(msgpack.packb(raw, use_bin_type=True))


def test_garbage_is_refused() -> None:
    for payload in (b"\xc1", msgpack.packb([1, 2]), b"x" * 300_000):
        with pytest.raises(FrameError):
            decode(payload)


def test_log_request_from_the_api_servers_query() -> None:
    request = log_request("/containerLogs/default/web/main",
                          "follow=true&tailLines=10&timestamps=true&limitBytes=500&sinceTime=2026-12-03T10:00:00Z")
    assert request == LogRequest("default", "web", "main", follow=True, tail_lines=10, timestamps=True,
                                 limit_bytes=500, since_time=1796292000.0)
    assert LogRequest.parse(request.as_map()) == request
    assert log_request("/containerLogs/ns/p/c", "").follow is False


@pytest.mark.parametrize(("path", "query", "code", "why"), [
    ("/containerLogs/default/web", "", 404, "expected /containerLogs"),
    ("/exec/default/web/main", "", 404, "no such path"),
    ("/containerLogs/Default/web/main", "", 400, "not a valid"),
    ("/containerLogs/default/web/main", "tailLines=-1", 400, "tailLines"),
    ("/containerLogs/default/web/main", "follow=maybe", 400, "follow"),
    ("/containerLogs/default/web/main", "sinceTime=yesterday", 400, "sinceTime"),
])
def test_bad_log_requests_are_refused(path: str, query: str, code: int, why: str) -> None:
    with pytest.raises(RequestRefused, match=why) as refused:
        log_request(path, query)
    assert refused.value.code == code


def test_a_bad_open_request_names_the_field() -> None:
    with pytest.raises(BodyError, match=r"req\.tail_lines"):
        LogRequest.parse({"op": "containerLogs", "namespace": "a", "pod": "b", "container": "c", "tail_lines": "9"})
    with pytest.raises(BodyError, match=r"req\.op"):
        LogRequest.parse({"op": "exec"})


def test_a_sender_sends_no_more_than_its_credit() -> None:
    window = SendWindow(100)
    assert window.take(64) == 64
    assert window.take(64) == 36
    with pytest.raises(StreamIdle):
        window.take(1, 0.05)
    threading.Timer(0.05, window.grant, (10,)).start()
    assert window.take(64) == 10  # waits, without a limit, for the reader's credit
    threading.Timer(0.05, window.end, (StreamEnded(499, "reader gone"),)).start()
    with pytest.raises(StreamEnded, match="reader gone"):
        window.take(1)  # and the end of the stream wakes it


def test_an_inbox_holds_at_most_its_window_and_sees_lost_frames() -> None:
    inbox = Inbox(window=10)
    inbox.put(0, b"12345")
    inbox.put(1, b"67890")
    assert inbox.buffered == 10
    inbox.put(2, b"x")  # past the window: the peer broke the protocol, the stream ends
    assert inbox.ended is not None
    assert inbox.ended.code == 502
    assert inbox.get(1) == b"12345"

    lossy = Inbox(window=100)
    lossy.put(0, b"a")
    lossy.put(2, b"c")
    assert lossy.get(1) == b"a"
    with pytest.raises(StreamEnded, match="frame 1 was lost"):
        lossy.get(1)


def test_an_inbox_ends_cleanly_after_what_it_holds() -> None:
    inbox = Inbox()
    with pytest.raises(StreamIdle):
        inbox.get(0.01)
    inbox.put(0, b"last words")
    inbox.end(StreamEnded(200, "end of log"))
    assert inbox.started.is_set()
    assert inbox.get(1) == b"last words"
    with pytest.raises(StreamEnded) as ended:
        inbox.get(1)
    assert ended.value.code == 200


def test_stream_topics_are_under_the_nodes_link() -> None:
    assert topics.stream("edge-1", topics.Direction.DOWN) == "edgehive/link/edge-1/stream/down"
    assert topics.parse_stream("edgehive/link/edge-1/stream/up") == ("edge-1", topics.Direction.UP)
    assert topics.parse_stream("edgehive/link/edge-1/up") is None
    assert topics.parse_link("edgehive/link/edge-1/stream/up") is None  # CloudHub never sees stream frames
    with pytest.raises(ValueError, match="not a valid node name"):
        topics.stream("+", topics.Direction.UP)


def test_the_node_advertises_the_stream_server() -> None:
    reported = {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "pi"}]}
    patched = kubelet_endpoint(reported, Address("streams.example", 10350))
    assert patched["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"},
                                    {"type": "Hostname", "address": "streams.example"}]
    assert patched["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10350}}
    assert kubelet_endpoint(reported, None) is reported


def test_a_node_advertising_another_kubelet_endpoint_is_repaired() -> None:
    """A Node is written only when its node's status changed (edge/edged/nodereport.py): one that advertises
    no stream server, or another, is put right when its node is heard, and one that is right is left alone."""
    stream = Address("streams.example", 10350)
    node_said = {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "pi"}]}
    repair = endpoint_repair(node_said, stream)
    assert repair == kubelet_endpoint(node_said, stream)
    assert endpoint_repair({**node_said, "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}, stream) is not None
    elsewhere = kubelet_endpoint(node_said, Address("old.example", 10350))
    assert endpoint_repair(elsewhere, stream) == kubelet_endpoint(node_said, stream)
    assert repair is not None
    assert endpoint_repair(repair, stream) is None
    assert endpoint_repair(node_said, None) is None
    assert endpoint_repair({}, stream) == {"addresses": [{"type": "Hostname", "address": "streams.example"}],
                                           "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}}}
