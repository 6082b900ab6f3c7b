"""The container lifecycle's rules with nothing running: how probes and hooks are read (and refused), init
containers planned and ordered, their status, termination messages, and the preStop hook's share of the grace
period. Handlers are run against real sockets on this machine."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from edge.edged.handlers import run_handler
from edge.edged.handlerspec import Handler, HandlerSpecError, read_handler, read_probe
from edge.edged.hooks import MIN_GRACE_AFTER_HOOK_S, pre_stop
from edge.edged.initcontainers import next_init, restarts
from edge.edged.podfields import FieldRefused
from edge.edged.podspec import PodSpecError, plan_pod
from edge.edged.runtime import Observed, PodmanRuntime
from edge.edged.status import ContainerView, pod_status
from edge.edged.termination import LOG_LIMIT, MESSAGE_LIMIT, TerminationLogs, log_message
from tests.fixtures.processes import wait_until

START = "2026-01-01T00:00:00Z"


def pod(*, init: list[dict[str, Any]] | None = None, restart_policy: str = "Always",
        **container: Any) -> dict[str, Any]:
    c = {"name": "main", "image": "localhost/busybox:1", **container}
    spec: dict[str, Any] = {"containers": [c], "restartPolicy": restart_policy}
    if init is not None:
        spec["initContainers"] = init
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": spec}


def refused(spec: dict[str, Any]) -> str:
    with pytest.raises(PodSpecError) as caught:
        plan_pod(spec, "edge-1", lambda _: None)
    assert caught.value.reason == "InvalidSpec"
    return caught.value.message


# -- reading probes and hooks ---------------------------------------------------------------------------------


def test_a_probe_reads_every_field_with_the_api_servers_defaults() -> None:
    probe = read_probe({"httpGet": {"port": "web", "path": "healthz", "scheme": "HTTPS", "host": "10.0.0.9",
                                    "httpHeaders": [{"name": "X-Check", "value": "1"}]},
                        "initialDelaySeconds": 4, "periodSeconds": 0, "failureThreshold": 7,
                        "terminationGracePeriodSeconds": 3}, "p", {"web": 8443}, kind="liveness")
    assert probe.handler == Handler("httpGet", scheme="HTTPS", host="10.0.0.9", port=8443, path="/healthz",
                                    headers=(("X-Check", "1"),))
    assert (probe.initial_delay_s, probe.period_s, probe.timeout_s, probe.success_threshold,
            probe.failure_threshold, probe.termination_grace_s) == (4, 10, 1, 1, 7, 3)
    assert read_handler({"tcpSocket": {"port": "8080"}}, "p", {}) == Handler("tcpSocket", port=8080)


@pytest.mark.parametrize(("raw", "kind", "named"), [
    ({"tcpSocket": {"port": "nope"}}, "readiness", "p.tcpSocket.port 'nope' names no port"),
    ({"exec": {"command": []}}, "readiness", "p.exec.command must be a non-empty list"),
    ({"exec": {"command": ["true"]}, "grpc": {"port": 1}}, "readiness", "p.grpc is not supported"),
    ({"exec": {"command": ["true"]}, "httpGet": {"port": 1}}, "readiness", "exactly one of"),
    ({"exec": {"command": ["true"]}, "successThreshold": 2}, "liveness", "p.successThreshold must be 1"),
    ({"exec": {"command": ["true"]}, "periodSeconds": -1}, "startup", "p.periodSeconds must be"),
    ({"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 5}, "readiness",
     "terminationGracePeriodSeconds must not be set on a readiness probe"),
    ({"httpGet": {"port": 70000}}, "liveness", "p.httpGet.port must be between 1 and 65535"),
])
def test_a_probe_that_cannot_be_honoured_is_refused_with_its_field(raw: dict[str, Any], kind: str,
                                                                   named: str) -> None:
    with pytest.raises(HandlerSpecError, match=named.replace(".", r"\.")):
        read_probe(raw, "p", {}, kind=kind)


def test_the_pod_is_refused_with_the_fields_path() -> None:
    assert "spec.containers[0].readinessProbe.tcpSocket.port 'x' names no port" in refused(
        pod(readinessProbe={"tcpSocket": {"port": "x"}}))
    for lifecycle, path in (({"postStart": {"tcpSocket": {"port": 80}}}, "lifecycle.postStart.tcpSocket"),
                             ({"onSuspend": {"exec": {"command": ["x"]}}}, "lifecycle.onSuspend")):
        with pytest.raises(FieldRefused) as caught:
            plan_pod(pod(lifecycle=lifecycle), "edge-1", lambda _: None)
        assert caught.value.message.startswith(f"spec.containers[0].{path} is not supported on this node: ")
        assert caught.value.field == f"spec.containers[].{path}"
    assert "spec.containers[0].terminationMessagePolicy must be File or FallbackToLogsOnError" in refused(
        pod(terminationMessagePolicy="Always"))
    assert "spec.containers[0].terminationMessagePath must be an absolute path" in refused(
        pod(terminationMessagePath="log"))
    init = [{"name": "setup", "image": "localhost/busybox:1", "livenessProbe": {"exec": {"command": ["true"]}}}]
    assert "spec.initContainers[0].livenessProbe: must not be set for init containers" in refused(pod(init=init))
    assert "is missing or repeated" in refused(pod(init=[{"name": "main", "image": "localhost/busybox:1"}]))
    sidecar = [{"name": "proxy", "image": "localhost/busybox:1", "restartPolicy": "Always"}]
    with pytest.raises(FieldRefused, match=r"spec\.initContainers\[0\]\.restartPolicy is not supported on this "
                                           "node: sidecar init containers"):
        plan_pod(pod(init=sidecar), "edge-1", lambda _: None)


def test_init_containers_are_planned_in_order_with_volumes_and_env() -> None:
    spec = pod(init=[{"name": "a", "image": "localhost/busybox:1", "env": [{"name": "X", "value": "1"}],
                      "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                     {"name": "b", "image": "localhost/busybox:1"}],
               lifecycle={"preStop": {"httpGet": {"port": "web", "path": "/bye"}}},
               ports=[{"name": "web", "containerPort": 8080}], terminationMessagePolicy="FallbackToLogsOnError")
    spec["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    plan = plan_pod(spec, "edge-1", lambda _: None)
    assert [(c.name, c.init) for c in plan.init_containers] == [("a", True), ("b", True)]
    assert plan.init_containers[0].env == {"X": "1"}
    assert plan.init_containers[0].mounts[0].target == "/work"
    main = plan.containers[0]
    assert (main.name, main.init, main.termination_message_path, main.termination_message_policy) == \
        ("main", False, "/dev/termination-log", "FallbackToLogsOnError")
    assert main.pre_stop == Handler("httpGet", port=8080, path="/bye")


# -- init containers: order, restarts, status ----------------------------------------------------------------


def seen(container: str, *, state: str = "exited", exit_code: int = 0, attempt: int = 0) -> Observed:
    return Observed(id=f"id-{container}-{attempt}", name=container, pod_uid="u-1", container=container,
                    attempt=attempt, spec_hash="h", state=state, exit_code=exit_code, started_at=1_767_225_610,
                    finished_at=1_767_225_620 if state == "exited" else 0, image_id="sha256:abc")


def test_the_next_init_container_is_the_first_that_has_not_succeeded() -> None:
    plan = plan_pod(pod(init=[{"name": "a", "image": "i:1"}, {"name": "b", "image": "i:1"}]), "n", lambda _: None)
    assert next_init(plan, {}) is plan.init_containers[0]
    assert next_init(plan, {"a": seen("a", state="running")}) is plan.init_containers[0]
    assert next_init(plan, {"a": seen("a", exit_code=1)}) is plan.init_containers[0]
    assert next_init(plan, {"a": seen("a")}) is plan.init_containers[1]
    assert next_init(plan, {"a": seen("a"), "b": seen("b")}) is None
    a, main = plan.init_containers[0], plan.containers[0]
    assert [restarts(a, policy, 1) for policy in ("Always", "OnFailure", "Never")] == [True, True, False]
    assert [restarts(a, policy, 0) for policy in ("Always", "OnFailure", "Never")] == [False, False, False]
    assert [restarts(main, policy, 0) for policy in ("Always", "OnFailure", "Never")] == [True, False, False]


def view(name: str, observed: Observed | None, waiting: str | None = None,
         last: dict[str, Any] | None = None) -> ContainerView:
    return ContainerView(name, "localhost/busybox:1", observed, waiting, "", True, last)


def status_of(policy: str, init: list[ContainerView], app_waiting: str = "PodInitializing") -> dict[str, Any]:
    return pod_status(policy, [view("main", None, app_waiting)], pod_ip="", host_ip="192.0.2.1", start_time=START,
                      since=START, init_views=init)


def test_a_pod_initialising_is_pending_and_not_initialized() -> None:
    status = status_of("Always", [view("a", seen("a")), view("b", seen("b", state="running"))])
    assert status["phase"] == "Pending"
    initialized = status["conditions"][0]
    assert initialized == {"type": "Initialized", "status": "False", "lastTransitionTime": START,
                           "reason": "ContainersNotInitialized", "message": "containers with incomplete status: [b]"}
    a, b = status["initContainerStatuses"]
    assert (a["ready"], b["ready"]) == (True, False)
    assert "started" not in a
    assert a["state"]["terminated"]["reason"] == "Completed"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_a_failed_init_container_fails_the_pod_only_under_never() -> None:
    failed = seen("a", exit_code=2)
    assert status_of("Never", [view("a", failed)])["phase"] == "Failed"
    backing_off = view("a", failed, "CrashLoopBackOff", last={"exitCode": 2, "reason": "Error"})
    assert status_of("OnFailure", [backing_off])["phase"] == "Pending"
    assert status_of("Always", [view("a", failed)])["phase"] == "Pending"


def test_once_initialised_the_app_containers_decide_the_phase() -> None:
    status = pod_status("Always", [view("main", seen("main", state="running"))], pod_ip="10.88.0.2",
                        host_ip="192.0.2.1", start_time=START, since=START, init_views=[view("a", seen("a"))])
    assert status["phase"] == "Running"
    assert status["conditions"][0] == {"type": "Initialized", "status": "True", "lastTransitionTime": START}
    assert list(status).index("initContainerStatuses") == list(status).index("containerStatuses") - 1


# -- termination messages -----------------------------------------------------------------------------------


def test_the_termination_message_is_the_files_end_or_the_logs(tmp_path: Path) -> None:
    logs = TerminationLogs(lambda uid: tmp_path / uid)
    plan = plan_pod(pod(terminationMessagePolicy="FallbackToLogsOnError"), "n", lambda _: None).containers[0]
    mount = logs.mount("u-1", plan, 2)
    assert (mount.target, mount.read_only) == ("/dev/termination-log", False)
    assert Path(mount.source).read_bytes() == b""
    log = b"".join(f"line {i}\n".encode() for i in range(200))
    assert logs.message("u-1", plan, 2, 1, lambda lines: log) == log_message(log)
    assert log_message(log).startswith("line 120\n")  # the last 80 lines...
    assert len(log_message(b"x" * 5000)) == LOG_LIMIT  # ... at most this many bytes of them
    assert logs.message("u-1", plan, 2, 0, lambda lines: log) == ""  # it did not fail: no log
    Path(mount.source).write_bytes(b"a" * 10 + b"b" * MESSAGE_LIMIT)
    assert logs.message("u-1", plan, 2, 1, lambda lines: log) == "b" * MESSAGE_LIMIT  # the file's end


# -- handlers on real sockets ---------------------------------------------------------------------------------


@dataclass
class Seen:
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def web() -> Iterator[tuple[int, Seen]]:
    """An HTTP server on a free port: / answers 200 with what it was sent, /bad 500, /moved a redirect to /."""
    seen_by_server = Seen()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_by_server.requests.append({"path": self.path, **dict(self.headers.items())})
            code = {"/bad": 500, "/moved": 302}.get(self.path, 200)
            self.send_response(code)
            if code == 302:
                self.send_header("Location", "/")
            self.end_headers()
            self.wfile.write(json.dumps({"ok": code == 200}).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen_by_server
    finally:
        server.shutdown()
        server.server_close()


NO_PODMAN = cast(PodmanRuntime, None)


def test_http_get_sends_the_path_and_headers_and_passes_on_2xx_and_3xx(web: tuple[int, Seen]) -> None:
    port, seen_by_server = web
    get = Handler("httpGet", port=port, path="/", headers=(("Host", "app.example"), ("X-Check", "yes")))
    assert run_handler(NO_PODMAN, "c", get, lambda: "127.0.0.1", 2).ok
    sent = seen_by_server.requests[-1]
    assert (sent["Host"], sent["X-Check"], sent["User-Agent"]) == ("app.example", "yes", "kube-probe/1.20")
    assert run_handler(NO_PODMAN, "c", Handler("httpGet", port=port, path="/moved"), lambda: "127.0.0.1", 2).ok
    bad = run_handler(NO_PODMAN, "c", Handler("httpGet", port=port, path="/bad"), lambda: "127.0.0.1", 2)
    assert not bad.ok
    assert "500" in bad.message
    named = Handler("httpGet", host="127.0.0.1", port=port)  # a host of its own: the pod's is not asked
    assert run_handler(NO_PODMAN, "c", named, lambda: pytest.fail("asked for the pod's address"), 2).ok


def test_tcp_socket_passes_when_something_listens() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        assert run_handler(NO_PODMAN, "c", Handler("tcpSocket", port=port), lambda: "127.0.0.1", 1).ok
    finally:
        listener.close()
    closed = run_handler(NO_PODMAN, "c", Handler("tcpSocket", port=port), lambda: "127.0.0.1", 1)
    assert not closed.ok
    assert f"127.0.0.1:{port}" in closed.message


class SlowExec:
    """A runtime whose exec takes ``seconds`` (a preStop hook that takes its time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ran: list[list[str]] = []

    def exec(self, container_id: str, command: list[str]) -> tuple[int, bytes]:
        self.ran.append(command)
        time.sleep(self.seconds)
        return 0, b""


class GatedExec:
    """A runtime whose exec returns once the test opens the gate (a probe's command that hangs)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def exec(self, container_id: str, command: list[str]) -> tuple[int, bytes]:
        self.calls += 1
        self.gate.wait(10)
        return 0, b""


def test_an_exec_probe_past_its_timeout_fails_and_is_not_started_again_while_it_runs() -> None:
    gated = GatedExec()
    probe = Handler("exec", command=("sleep", "9"))
    outcome = run_handler(cast(PodmanRuntime, gated), "c", probe, lambda: "", 0.1)
    assert not outcome.ok
    assert "timed out after 0.1s" in outcome.message
    again = run_handler(cast(PodmanRuntime, gated), "c", probe, lambda: "", 0.1)
    assert "still running from an earlier time" in again.message
    assert gated.calls == 1  # one hung command holds one thread, not one per period
    assert run_handler(cast(PodmanRuntime, gated), "other", probe, lambda: "", 0.1).ok is False  # its own
    gated.gate.set()
    wait_until(lambda: run_handler(cast(PodmanRuntime, gated), "c", probe, lambda: "", 1).ok, timeout=5,
               what="the probe to run again once the hung command ended")


def test_the_pre_stop_hook_uses_up_the_grace_period_it_takes() -> None:
    plan = plan_pod(pod(lifecycle={"preStop": {"exec": {"command": ["sleep", "1"]}}}), "n", lambda _: None)
    container = plan.containers[0]
    quick = SlowExec(0.0)
    assert pre_stop(cast(PodmanRuntime, quick), [("c1", container)], 30, lambda: "") == 30
    assert quick.ran == [["sleep", "1"]]
    started = time.monotonic()
    # A hook longer than the whole grace period is given up at its end; the stop still gets kubelet's minimum.
    assert pre_stop(cast(PodmanRuntime, SlowExec(5)), [("c1", container)], 1, lambda: "") == MIN_GRACE_AFTER_HOOK_S
    assert time.monotonic() - started < 3
    # The hook's thread is left to run on: it logs the hook's timeout just after; waited for, not to log past the test.
    for thread in threading.enumerate():
        if thread.name == f"prestop-{container.name}":
            thread.join(timeout=5)
    no_hook = plan_pod(pod(), "n", lambda _: None).containers[0]
    assert pre_stop(cast(PodmanRuntime, SlowExec(5)), [("c1", no_hook)], 7, lambda: "") == 7
