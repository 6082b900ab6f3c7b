"""The SPDY/3.1 codec and session: frames round-trip, windows are kept, bad bytes close the session cleanly."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.stream.spdydictionary import SPDY3_DICTIONARY
from cloud.stream.spdyframes import (
    FLAG_FIN,
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    GoAwayStatus,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    WindowUpdate,
    decode_header_block,
    encode_header_block,
)
from cloud.stream.spdysession import (
    ConnectionClosed,
    DataReceived,
    Event,
    FlowControl,
    PingAcknowledged,
    SpdySession,
    StreamEnded,
    StreamOpened,
    StreamReplied,
    StreamReset,
)


def test_the_dictionary_is_the_spdy3_one() -> None:
    assert len(SPDY3_DICTIONARY) == 1423
    assert zlib.adler32(SPDY3_DICTIONARY) == 0xE3C6A7C2


def test_every_frame_round_trips_through_one_compression_context_per_direction() -> None:
    frames: list[Frame] = [
        SynStream(1, {"streamtype": ["error"], "port": ["8080"]}, priority=3),
        SynReply(1, {}),
        HeadersFrame(1, {"x-multi": ["a", "b"]}, FLAG_FIN),
        SynStream(3, {"streamtype": ["stdout"]}, flags=FLAG_FIN),  # a second block: the zlib stream continues
        Data(3, b"hello", FLAG_FIN),
        Data(3, b""),
        RstStream(5, RstStatus.CANCEL),
        Settings({7: 1 << 20, 4: 100}),
        Ping(7),
        GoAway(9, GoAwayStatus.PROTOCOL_ERROR),
        WindowUpdate(0, 12345),
    ]
    encoder, decoder = FrameEncoder(), FrameDecoder()
    wire = b"".join(encoder.encode(frame) for frame in frames)
    decoded = [frame for index in range(len(wire)) for frame in decoder.feed(wire[index:index + 1])]
    assert decoded == frames


def test_header_names_go_out_lowercase_and_values_join_with_nul() -> None:
    block = encode_header_block({"StreamType": ["data"], "multi": ["a", "b"]})
    assert decode_header_block(block) == {"streamtype": ["data"], "multi": ["a", "b"]}
    assert b"a\0b" in block


@pytest.mark.parametrize(("block", "message"), [
    (struct.pack(">I", 1) + struct.pack(">I", 4) + b"Port" + struct.pack(">I", 0), "not lowercase"),
    (struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" + struct.pack(">I", 0)) * 2, "appears twice"),
    (struct.pack(">I", 1) + struct.pack(">I", 0) + struct.pack(">I", 0), "empty header name"),
    (struct.pack(">I", 1) + struct.pack(">I", 9) + b"ab", "truncated"),
    (struct.pack(">I", 0) + b"x", "bytes after"),
])
def test_a_bad_header_block_is_a_protocol_error(block: bytes, message: str) -> None:
    with pytest.raises(SpdyProtocolError, match=message):
        decode_header_block(block)


def _pair(mode: FlowControl) -> tuple[SpdySession, SpdySession]:
    return SpdySession(server=True, flow_control=mode), SpdySession(server=False, flow_control=mode)


def _deliver(sender: SpdySession, receiver: SpdySession) -> list[Event]:
    return receiver.receive_data(sender.data_to_send())


def _received(events: list[Event]) -> int:
    return sum(len(event.data) for event in events if isinstance(event, DataReceived))


def test_a_stream_opens_is_replied_carries_data_both_ways_and_closes() -> None:
    server, client = _pair(FlowControl.STRICT)
    stream_id = client.open_stream({"streamtype": ["stdout"]})
    assert stream_id == 1
    opened = _deliver(client, server)
    assert opened == [StreamOpened(1, {"streamtype": ["stdout"]}, remote_closed=False)]
    server.reply(1)
    server.send_data(1, b"out")
    server.end_stream(1)
    events = _deliver(server, client)
    assert events == [StreamReplied(1, {}), DataReceived(1, b"out"), StreamEnded(1)]
    client.send_data(1, b"in")
    client.end_stream(1)
    assert _deliver(client, server) == [DataReceived(1, b"in"), StreamEnded(1)]


def _send_200k(mode: FlowControl) -> tuple[SpdySession, SpdySession, list[Event]]:
    """A server that sends 200 000 bytes on a stream its client opened, and what the client got of them."""
    server, client = _pair(mode)
    client.open_stream({"streamtype": ["stdout"]})
    _deliver(client, server)
    server.reply(1)
    server.send_data(1, b"x" * 200_000)
    return server, client, _deliver(server, client)


def test_strict_flow_control_holds_data_back_until_the_reader_consumes_it() -> None:
    server, client, first = _send_200k(FlowControl.STRICT)
    assert _received(first) == 64 * 1024  # the initial window, and not a byte more
    assert server.pending(1) == 200_000 - 64 * 1024
    assert _received(_deliver(server, client)) == 0  # nothing moves while the reader holds it all
    client.consumed(1, 64 * 1024)
    assert _received(_deliver(client, server)) == 0  # the WINDOW_UPDATEs go the other way
    second = _deliver(server, client)
    assert _received(second) == 64 * 1024
    assert client.unconsumed == 64 * 1024


def test_strict_flow_control_ends_a_session_whose_peer_overruns_its_window() -> None:
    receiver = SpdySession(server=True, flow_control=FlowControl.STRICT)
    sender = SpdySession(server=False, flow_control=FlowControl.ADVISORY)  # ignores windows, as spdystream does
    sender.open_stream({"streamtype": ["stdin"]})
    _deliver(sender, receiver)
    receiver.reply(1)
    _deliver(receiver, sender)
    sender.send_data(1, b"x" * (64 * 1024 + 1))
    events = _deliver(sender, receiver)
    assert isinstance(events[-1], ConnectionClosed)
    assert "flow-control window" in events[-1].reason
    assert FrameDecoder().feed(receiver.data_to_send())[-1] == GoAway(1, GoAwayStatus.PROTOCOL_ERROR)


def test_strict_flow_control_resets_a_stream_that_overruns_the_window_its_settings_gave() -> None:
    receiver = SpdySession(server=True, flow_control=FlowControl.STRICT, receive_window=1000)
    sender = SpdySession(server=False, flow_control=FlowControl.STRICT)
    sender.open_stream({"streamtype": ["stdin"]})
    _deliver(sender, receiver)
    receiver.reply(1)
    _deliver(receiver, sender)  # carries SETTINGS: a strict sender keeps to 1000 bytes
    sender.send_data(1, b"x" * 1500)
    assert _received(_deliver(sender, receiver)) == 1000
    assert sender.pending(1) == 500
    rogue = FrameEncoder()  # a sender that ignores the settings: its 1001st byte resets the stream
    rogue_session = SpdySession(server=True, flow_control=FlowControl.STRICT, receive_window=1000)
    rogue_session.receive_data(rogue.encode(SynStream(1, {"streamtype": ["stdin"]})))
    rogue_session.reply(1)
    rogue_session.data_to_send()
    events = rogue_session.receive_data(rogue.encode(Data(1, b"x" * 1001)))
    assert events == [StreamReset(1, RstStatus.FLOW_CONTROL_ERROR)]
    assert FrameDecoder().feed(rogue_session.data_to_send()) == [RstStream(1, RstStatus.FLOW_CONTROL_ERROR)]
    assert not rogue_session.closed


def test_advisory_flow_control_sends_past_a_window_the_peer_never_opens() -> None:
    server, client, events = _send_200k(FlowControl.ADVISORY)
    assert _received(events) == 200_000
    assert server.pending(1) == 0
    assert client.unconsumed == 200_000  # what a server checks to stop reading its socket


def test_consumed_data_is_given_back_in_window_updates_to_the_peer() -> None:
    server, client = _pair(FlowControl.ADVISORY)
    client.open_stream({"streamtype": ["stdin"]})
    _deliver(client, server)
    server.reply(1)
    _deliver(server, client)
    client.send_data(1, b"y" * 40_000)
    _deliver(client, server)
    server.consumed(1, 40_000)
    updates = [frame for frame in FrameDecoder().feed(server.data_to_send()) if isinstance(frame, WindowUpdate)]
    assert updates == [WindowUpdate(0, 40_000), WindowUpdate(1, 40_000)]
    assert server.unconsumed == 0


def test_the_peers_pings_are_echoed_and_ours_acknowledged() -> None:
    server, client = _pair(FlowControl.ADVISORY)
    ping_id = client.ping()
    assert _deliver(client, server) == []
    assert _deliver(server, client) == [PingAcknowledged(ping_id)]


def _protocol_error(session: SpdySession, data: bytes) -> str:
    events = session.receive_data(data)
    assert len(events) == 1
    closed = events[0]
    assert isinstance(closed, ConnectionClosed)
    assert closed.error
    assert FrameDecoder().feed(session.data_to_send())[-1] == GoAway(0, GoAwayStatus.PROTOCOL_ERROR)
    assert session.receive_data(data) == []  # a closed session ignores what follows
    return closed.reason


def test_a_control_frame_of_another_version_closes_the_connection_with_a_protocol_error() -> None:
    frame = struct.pack(">HHI", 0x8002, 6, 4) + struct.pack(">I", 1)
    assert "version 2" in _protocol_error(SpdySession(), frame)


def test_a_stream_opened_with_the_servers_id_parity_is_a_protocol_error() -> None:
    frame = FrameEncoder().encode(SynStream(2, {"streamtype": ["error"]}))
    assert "an id of our side" in _protocol_error(SpdySession(), frame)


def test_a_header_block_that_does_not_inflate_is_a_protocol_error() -> None:
    frame = struct.pack(">HHI", 0x8003, 1, 14) + struct.pack(">IIBB", 1, 0, 0, 0) + b"junk"
    assert "does not decompress" in _protocol_error(SpdySession(), frame)


def test_a_frame_larger_than_allowed_is_refused_before_it_is_buffered() -> None:
    assert "larger than" in _protocol_error(SpdySession(max_frame=1024), struct.pack(">II", 1, 4096))


def test_a_header_block_inflating_past_the_limit_is_a_protocol_error() -> None:
    frame = FrameEncoder().encode(SynStream(1, {"big": ["z" * 300_000]}))
    assert "inflates past" in _protocol_error(SpdySession(), frame)


def test_data_for_a_stream_never_opened_resets_that_stream_only() -> None:
    session = SpdySession()
    assert session.receive_data(FrameEncoder().encode(Data(9, b"zz"))) == []
    assert FrameDecoder().feed(session.data_to_send()) == [RstStream(9, RstStatus.INVALID_STREAM)]
    assert not session.closed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    session = SpdySession()
    for event in session.receive_data(data):
        assert not isinstance(event, Exception)
    session.data_to_send()
