"""The upgrade handshake and the exec/attach and port-forward channel protocols, driven by a client session."""

from __future__ import annotations

import json

import pytest

from cloud.stream import portforward, remotecommand
from cloud.stream.portforward import (
    ForwardClientClosed,
    ForwardData,
    ForwardGone,
    ForwardOpened,
    PortForwardSession,
)
from cloud.stream.remotecommand import (
    Aborted,
    Ready,
    RemoteCommandError,
    RemoteCommandSession,
    Resized,
    StdinClosed,
    StdinData,
    apiserver_exec_options,
    kubelet_exec_options,
)
from cloud.stream.spdyframes import FrameDecoder, RstStatus, RstStream
from cloud.stream.spdysession import (
    DataReceived,
    Event,
    GoAwayReceived,
    SpdySession,
    StreamEnded,
    StreamReplied,
    StreamReset,
)
from cloud.stream.upgrade import ACCEPTED_HEADER, PROTOCOL_HEADER, answer_upgrade

UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]


def test_the_upgrade_takes_the_clients_most_preferred_protocol_the_server_speaks() -> None:
    offered = [(PROTOCOL_HEADER, name) for name in ("v5.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io")]
    answer = answer_upgrade(UPGRADE + offered, remotecommand.SUPPORTED_PROTOCOLS)
    assert answer.status == 101
    assert answer.protocol == "v3.channel.k8s.io"
    assert (PROTOCOL_HEADER, "v3.channel.k8s.io") in answer.headers
    assert answer.to_bytes().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_a_client_that_offers_no_protocol_is_the_legacy_one() -> None:
    answer = answer_upgrade([("connection", "keep-alive, Upgrade"), ("upgrade", "spdy/3.1")], ("portforward.k8s.io",))
    assert (answer.status, answer.protocol) == (101, "")


def test_no_common_protocol_is_refused_with_the_ones_the_server_accepts() -> None:
    answer = answer_upgrade([*UPGRADE, (PROTOCOL_HEADER, "v9.channel.k8s.io")], portforward.SUPPORTED_PROTOCOLS)
    assert answer.status == 403
    assert (ACCEPTED_HEADER, "portforward.k8s.io") in answer.headers
    assert b"unable to negotiate protocol" in answer.body


@pytest.mark.parametrize("headers", [[("Connection", "Upgrade"), ("Upgrade", "websocket")], [], [UPGRADE[1]]])
def test_websocket_and_plain_requests_are_refused_with_400(headers: list[tuple[str, str]]) -> None:
    answer = answer_upgrade(headers, remotecommand.SUPPORTED_PROTOCOLS)
    assert answer.status == 400
    assert b"Content-Length:" in answer.to_bytes()


def test_exec_options_from_the_kubelet_and_the_api_server_forms() -> None:
    kubelet = kubelet_exec_options("command=sh&command=-c&command=echo+hi&input=1&output=1&error=1", "web")
    api = apiserver_exec_options("command=sh&command=-c&command=echo+hi&container=web&stdin=true&stdout=true"
                                 "&stderr=true")
    assert kubelet == api
    assert kubelet.command == ["sh", "-c", "echo hi"]
    tty = kubelet_exec_options("command=sh&output=1&error=1&tty=1", "web")
    assert (tty.stderr, tty.tty) == (False, True)  # a terminal has no separate stderr
    assert kubelet_exec_options("output=1", "web", attach=True).command == []


@pytest.mark.parametrize(("query", "message"), [("command=ls", "at least 1 of"), ("output=1", "a command")])
def test_exec_options_refuse_what_cannot_run(query: str, message: str) -> None:
    with pytest.raises(RemoteCommandError, match=message):
        kubelet_exec_options(query, "web")


def test_exit_statuses_carry_the_code_kubectl_exits_with() -> None:
    assert remotecommand.exit_status(0) == {"metadata": {}, "status": "Success"}
    failure = remotecommand.exit_status(3)
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}


def _pass(sender: SpdySession, receiver: SpdySession) -> list[Event]:
    return receiver.receive_data(sender.data_to_send())


def _exec(query: str, kinds: list[str]) -> tuple[SpdySession, RemoteCommandSession, dict[str, int], list[object]]:
    server, client = SpdySession(), SpdySession(server=False)
    channels = RemoteCommandSession(server, remotecommand.V4, kubelet_exec_options(query, "web"))
    ids = {kind: client.open_stream({"streamType": [kind]}) for kind in kinds}
    actions: list[object] = list(channels.handle(_pass(client, server)))
    replies = _pass(server, client)
    assert {event.stream_id for event in replies if isinstance(event, StreamReplied)} == set(ids.values())
    return client, channels, ids, actions


def test_exec_is_ready_once_every_expected_stream_is_there_and_carries_stdin_and_resizes() -> None:
    client, channels, ids, actions = _exec("command=sh&input=1&output=1&tty=1",
                                           ["error", "stdin", "stdout", "resize"])
    assert actions == [Ready()]
    client.send_data(ids["stdin"], b"ls\n")
    client.send_data(ids["resize"], b'{"Width":100,"Hei')
    client.send_data(ids["resize"], b'ght":30}\n{"Width":120,"Height":40}\n')
    client.end_stream(ids["stdin"])
    got = channels.handle(_pass(client, channels.session))
    assert got == [StdinData(b"ls\n"), Resized(100, 30), Resized(120, 40), StdinClosed()]


def test_exec_waits_for_streams_still_missing() -> None:
    _client, _channels, _ids, actions = _exec("command=sh&output=1&error=1", ["error", "stdout"])
    assert actions == []


def test_finish_ends_the_streams_and_reports_the_exit_code_on_the_error_stream() -> None:
    client, channels, ids, _ = _exec("command=sh&output=1&error=1", ["error", "stdout", "stderr"])
    channels.write_stdout(b"hi\n")
    channels.write_stderr(b"oops\n")
    channels.finish(3)
    events = _pass(channels.session, client)
    data = {stream_id: b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id)
            for stream_id in ids.values()}
    assert data[ids["stdout"]] == b"hi\n"
    assert data[ids["stderr"]] == b"oops\n"
    assert json.loads(data[ids["error"]])["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert {e.stream_id for e in events if isinstance(e, StreamEnded)} == set(ids.values())
    assert isinstance(events[-1], GoAwayReceived)


def test_a_lost_connection_aborts_the_command() -> None:
    _client, channels, _ids, _ = _exec("command=sh&input=1&output=1", ["error", "stdin", "stdout"])
    assert channels.handle(channels.session.connection_lost()) == [StdinClosed(), Aborted("the connection ended")]
    channels.finish(0)  # after the end, finishing is a no-op and not an error


def _forward(ports: set[int] | None = None) -> tuple[SpdySession, PortForwardSession]:
    return SpdySession(server=False), PortForwardSession(SpdySession(), ports)


def _pair(client: SpdySession, request_id: str, port: str = "8080") -> tuple[int, int]:
    error = client.open_stream({"streamType": ["error"], "port": [port], "requestID": [request_id]})
    data = client.open_stream({"streamType": ["data"], "port": [port], "requestID": [request_id]})
    return error, data


def test_a_forward_opens_when_both_streams_of_a_request_are_there_and_carries_bytes_both_ways() -> None:
    client, forward = _forward()
    _error, data = _pair(client, "0")
    _pair(client, "1", "9090")
    assert forward.handle(_pass(client, forward.session)) == [ForwardOpened("0", 8080), ForwardOpened("1", 9090)]
    _pass(forward.session, client)
    client.send_data(data, b"GET /")
    client.end_stream(data)
    assert forward.handle(_pass(client, forward.session)) == [ForwardData("0", b"GET /"), ForwardClientClosed("0")]
    forward.send("0", b"200 OK")
    forward.close("0")
    events = _pass(forward.session, client)
    assert DataReceived(data, b"200 OK") in events
    assert StreamEnded(data) in events


def test_a_client_without_request_ids_is_paired_by_stream_ids() -> None:
    client, forward = _forward()
    client.open_stream({"streamType": ["error"], "port": ["80"]})
    client.open_stream({"streamType": ["data"], "port": ["80"]})
    assert forward.handle(_pass(client, forward.session)) == [ForwardOpened("1", 80)]


@pytest.mark.parametrize("headers", [{"streamType": ["data"], "port": ["0"]}, {"streamType": ["data"]},
                                     {"streamType": ["video"], "port": ["80"]}])
def test_a_stream_with_a_bad_port_or_type_is_reset(headers: dict[str, list[str]]) -> None:
    client, forward = _forward()
    stream_id = client.open_stream(headers)
    assert forward.handle(_pass(client, forward.session)) == []
    assert FrameDecoder().feed(forward.session.data_to_send()) == [RstStream(stream_id, RstStatus.PROTOCOL_ERROR)]


def test_a_port_the_pod_does_not_have_is_refused_on_the_error_stream() -> None:
    client, forward = _forward(ports={80})
    error, _data = _pair(client, "0", "22")
    assert forward.handle(_pass(client, forward.session)) == []
    events = _pass(forward.session, client)
    assert DataReceived(error, b"port 22 is not a port of this pod") in events


def test_a_reset_from_the_client_ends_the_forward() -> None:
    client, forward = _forward()
    error, _data = _pair(client, "0")
    forward.handle(_pass(client, forward.session))
    client.reset_stream(error)
    assert forward.handle(_pass(client, forward.session)) == [ForwardGone("0")]
    assert StreamReset in {type(event) for event in _pass(forward.session, client)}
