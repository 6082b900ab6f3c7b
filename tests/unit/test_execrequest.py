"""The exec, attach and port-forward requests: the kubelet's query parsed once, unknown parameters refused,
and the frames' channel and exit code through the wire format."""

from __future__ import annotations

import pytest

from schemas.execrequest import ExecRequest, ForwardRequest, exec_request, forward_path
from schemas.fields import BodyError
from schemas.streamframe import STDERR, STDIN, Frame, FrameError, Kind, decode
from schemas.streamrequest import RequestRefused


def test_the_api_servers_exec_query_is_parsed_once() -> None:
    request = exec_request("/exec/default/web/main",
                           "command=sh&command=-c&command=echo+hi&input=1&output=1&error=1")
    assert request == ExecRequest("exec", "default", "web", "main", ("sh", "-c", "echo hi"), stdin=True,
                                  stdout=True, stderr=True, tty=False)
    assert ExecRequest.parse(request.as_map()) == request
    with_tty = exec_request("/exec/default/web/main", "command=sh&input=1&output=1&error=1&tty=1")
    assert with_tty.tty
    assert not with_tty.stderr
    attach = exec_request("/attach/default/web/main", "input=1&output=1")
    assert (attach.op, attach.command) == ("attach", ())


@pytest.mark.parametrize(("path", "query", "code", "words"), [
    ("/exec/default/web/main", "command=ls&output=1&bogus=1&other=2", 400, "unknown query parameters bogus, other"),
    ("/exec/default/web/main", "output=1", 400, "you must specify a command"),
    ("/exec/default/web/main", "command=ls", 400, "at least 1 of stdin, stdout, stderr"),
    ("/exec/default/web/main", "command=ls&output=yes", 400, "output='yes'"),
    ("/attach/default/web/main", "command=ls&output=1", 400, "an attach runs no command"),
    ("/exec/default/web", "command=ls&output=1", 404, "no such path"),
    ("/exec/default/Bad_Pod/main", "command=ls&output=1", 400, "not a valid"),
])
def test_bad_exec_requests_are_refused_naming_why(path: str, query: str, code: int, words: str) -> None:
    with pytest.raises(RequestRefused) as refused:
        exec_request(path, query)
    assert refused.value.code == code
    assert words in str(refused.value)


def test_port_forward_paths_and_requests() -> None:
    assert forward_path("/portForward/default/web", "") == ("default", "web")
    assert forward_path("/portForward/default/web", "port=80") == ("default", "web")
    for query in ("port=0", "port=x", "other=1"):
        with pytest.raises(RequestRefused):
            forward_path("/portForward/default/web", query)
    assert ForwardRequest.parse(ForwardRequest("default", "web", 8080).as_map()) == ForwardRequest("default", "web",
                                                                                                  8080)
    with pytest.raises(BodyError, match=r"req\.port"):
        ForwardRequest.parse({"op": "portForward", "namespace": "default", "pod": "web", "port": 70000})
    with pytest.raises(BodyError, match=r"req\.command"):
        ExecRequest.parse({"op": "exec", "namespace": "default", "pod": "web", "container": "main", "command": []})


def test_frames_carry_their_channel_and_the_exit_code() -> None:
    data = Frame("edge-1", "ab" * 8, Kind.DATA, seq=3, data=b"x", channel=STDERR)
    assert decode(data.encode()) == data
    stdin_end = Frame("edge-1", "ab" * 8, Kind.DATA, seq=4, channel=STDIN)
    assert decode(stdin_end.encode()) == stdin_end
    closed = Frame("edge-1", "ab" * 8, Kind.CLOSE, code=200, reason="done", exit_code=3)
    assert decode(closed.encode()).exit_code == 3
    with pytest.raises(FrameError, match="ch"):
        decode(Frame("edge-1", "ab" * 8, Kind.DATA, channel=9).encode())
