"""The WebSocket server end and the v5 channel protocol on it, driven by hand-made client frames."""

from __future__ import annotations

import json
import os
import struct

import pytest

from cloud.stream.remotecommand import Aborted, Resized, StdinClosed, StdinData, kubelet_exec_options
from cloud.stream.spdysession import SpdySession, StreamOpened, StreamReplied
from cloud.stream.spdytunnel import TunneledSpdy
from cloud.stream.websocket import Closed, Message, WebSocketConnection, answer_websocket
from cloud.stream.wschannels import CLOSE, ERROR, RESIZE, STDIN, STDOUT, V5, WebSocketCommandSession

HANDSHAKE = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
             ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")]


def client_frame(payload: bytes, opcode: int = 0x2, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame as a client sends it (masked)."""
    length = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    size = bytes([length]) if length < 126 else (bytes([126]) + struct.pack(">H", length) if length < 65536
                                                 else bytes([127]) + struct.pack(">Q", length))
    if not masked:
        return head + size + payload
    mask = os.urandom(4)
    return head + bytes([size[0] | 0x80]) + size[1:] + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each unmasked frame the server wrote."""
    frames = []
    while data:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack_from(">H", data, 2)[0], 4
        elif length == 127:
            length, offset = struct.unpack_from(">Q", data, 2)[0], 10
        frames.append((opcode, data[offset:offset + length]))
        data = data[offset + length:]
    return frames


def test_the_handshake_answers_with_the_rfc_accept_key_and_the_shared_sub_protocol() -> None:
    answer = answer_websocket(HANDSHAKE, (V5,))
    assert answer.status == 101
    assert ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in answer.headers  # RFC 6455's example
    assert answer.protocol == V5


def test_a_sub_protocol_the_server_does_not_speak_is_refused_so_that_kubectl_falls_back() -> None:
    headers = [*HANDSHAKE[:4], ("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io")]
    assert answer_websocket(headers, (V5,)).status == 400


def test_messages_arrive_whole_across_fragments_and_slicing_and_pings_are_answered() -> None:
    connection = WebSocketConnection()
    big = os.urandom(70_000)
    wire = (client_frame(b"ab", fin=False) + client_frame(b"", 0x9) + client_frame(b"cd", 0x0)
            + client_frame(big))
    events = [event for index in range(0, len(wire), 1000)
              for event in connection.receive_data(wire[index:index + 1000])]
    assert events == [Message(b"abcd", binary=True), Message(big, binary=True)]
    assert server_frames(connection.data_to_send()) == [(0xA, b"")]


def test_a_close_is_answered_and_ends_the_connection() -> None:
    connection = WebSocketConnection()
    assert connection.receive_data(client_frame(struct.pack(">H", 1000), 0x8)) == [Closed(1000)]
    assert server_frames(connection.data_to_send()) == [(0x8, struct.pack(">H", 1000))]
    assert connection.receive_data(client_frame(b"late")) == []


# Named by reason, not by the frame's bytes (a random mask): xdist's workers must collect the same test ids.
@pytest.mark.parametrize(("frame", "reason"), [
    (client_frame(b"x", masked=False), "not masked"),
    (client_frame(b"x", 0x0), "no message to continue"),
    (bytes([0xC2]) + client_frame(b"x")[1:], "reserved bits"),
    (client_frame(b"x", 0x3), "unknown data opcode"),
], ids=lambda value: value if isinstance(value, str) else "frame")
def test_a_bad_frame_closes_with_a_protocol_error(frame: bytes, reason: str) -> None:
    connection = WebSocketConnection()
    events = connection.receive_data(frame)
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert reason in events[0].error
    assert server_frames(connection.data_to_send()) == [(0x8, struct.pack(">H", 1002))]


def _session(query: str) -> WebSocketCommandSession:
    return WebSocketCommandSession(WebSocketConnection(), kubelet_exec_options(query, "web"))


def test_v5_carries_stdin_its_close_signal_and_resizes() -> None:
    session = _session("command=sh&input=1&output=1&tty=1")
    wire = (client_frame(bytes([STDIN]) + b"ls\n") + client_frame(bytes([RESIZE]) + b'{"Width":80,"Height":24}')
            + client_frame(bytes([CLOSE, STDIN])))
    assert session.handle(session.connection.receive_data(wire)) == [StdinData(b"ls\n"), Resized(80, 24),
                                                                     StdinClosed()]


def test_v5_finish_sends_the_status_on_the_error_channel_then_a_normal_close() -> None:
    session = _session("command=sh&output=1&error=1")
    session.write_stdout(b"hi\n")
    session.finish(3)
    frames = server_frames(session.connection.data_to_send())
    assert frames[0] == (0x2, bytes([STDOUT]) + b"hi\n")
    assert frames[1][1][0] == ERROR
    assert json.loads(frames[1][1][1:])["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert frames[2] == (0x8, struct.pack(">H", 1000))


def test_a_client_that_goes_away_aborts_the_command() -> None:
    session = _session("command=sh&input=1&output=1")
    events = session.handle(session.connection.connection_lost())
    assert events == [StdinClosed(), Aborted("the connection ended")]


def test_a_tunnel_carries_spdy_inside_websocket_messages_both_ways() -> None:
    tunnel = TunneledSpdy()
    client = SpdySession(server=False)
    client.open_stream({"streamType": ["error"], "port": ["80"], "requestID": ["0"]})
    events = tunnel.receive_data(client_frame(client.data_to_send()))
    assert events == [StreamOpened(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}, False)]
    tunnel.session.reply(1)
    frames = server_frames(tunnel.data_to_send())
    assert len(frames) == 1
    assert frames[0][0] == 0x2
    assert client.receive_data(frames[0][1]) == [StreamReplied(1, {})]
