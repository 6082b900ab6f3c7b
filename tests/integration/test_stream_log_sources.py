"""The node's stream end reads a log from the container's k8s-file log or, when it cannot, from podman's REST log
API (edge/stream/session.py): both on a real podman and a real container, giving the same bytes."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import pytest
from podman.domain.containers import Container

from edge.podlabels import ATTEMPT_LABEL, CONTAINER_LABEL, NAMESPACE_LABEL, NODE_LABEL, POD_LABEL
from edge.stream.podmanapi import PodmanApi
from edge.stream.session import LogSession
from runtime.streamflow import SendWindow
from schemas.streamframe import Frame, Kind
from schemas.streamrequest import LogRequest
from tests.fixtures.podman import BUSYBOX_IMAGE, Podman
from tests.fixtures.processes import wait_until

NODE = "edge-logs"
# Lines on both streams, a line longer than conmon's buffer (split into partial records), then an exit.
SCRIPT = ("for i in $(seq 1 300); do echo line $i; echo err $i >&2; done; "
          "printf 'x%.0s' $(seq 1 20000); echo; echo done")


class ApiOnly(PodmanApi):
    """podman whose log file the stream end cannot see (as with podman in another container)."""

    def log_file(self, container_id: str) -> str | None:
        return "/nonexistent/ctr.log"


@contextlib.contextmanager
def writer(podman: Podman, script: str) -> Iterator[tuple[str, Container]]:
    """A container as EdgeD labels it (the pod's name, the container) running ``script``."""
    name = f"logs-{uuid.uuid4().hex[:6]}"
    labels = {NODE_LABEL: NODE, NAMESPACE_LABEL: "default", POD_LABEL: name, CONTAINER_LABEL: "main",
              ATTEMPT_LABEL: "0"}
    with podman.client() as client:
        container = client.containers.run(BUSYBOX_IMAGE, ["sh", "-c", script], labels=labels, detach=True)
        assert isinstance(container, Container)
        try:
            yield name, container
        finally:
            container.remove(force=True)


@pytest.fixture
def pod(podman: Podman) -> Iterator[str]:
    with writer(podman, SCRIPT) as (name, container):
        wait_until(lambda: _status(container) in ENDED, timeout=60, what="the writer to exit")
        yield name


# podman's two states of a container whose process ended: "stopped" until its cleanup (conmon's exit hook)
# has run, "exited" after; which one a reload sees depends on that race.
ENDED = ("stopped", "exited")


def _status(container: Container) -> str:
    container.reload()
    return str(container.status)


def serve(api: PodmanApi, pod: str, **options: object) -> bytes:
    frames: list[Frame] = []
    request = LogRequest("default", pod, "main", **options)  # type: ignore[arg-type]
    LogSession(api, NODE, uuid.uuid4().hex, request, SendWindow(1 << 30), frames.append).run()
    assert frames[-1].kind is Kind.CLOSE, frames[-1]
    return b"".join(f.data for f in frames if f.kind is Kind.DATA)


def test_the_log_file_and_podmans_log_api_give_the_same_bytes(podman: Podman, pod: str) -> None:
    direct, fallback = PodmanApi(podman.base_url, NODE), ApiOnly(podman.base_url, NODE)
    path = direct.log_file(direct.pod_containers("default", pod)[0].id)
    assert path is not None
    assert path.endswith(".log")
    whole = serve(direct, pod)
    # stdout and stderr reach conmon through pipes of their own: their lines interleave as they came
    wanted = [f"{kind} {i}".encode() for kind in ("line", "err") for i in range(1, 301)]
    assert sorted(whole.splitlines()) == sorted([*wanted, b"x" * 20000, b"done"])
    assert whole.endswith(b"x" * 20000 + b"\ndone\n")
    assert serve(fallback, pod) == whole
    assert serve(direct, pod, follow=True) == whole  # the container ended: the followed log ends once drained
    assert serve(fallback, pod, follow=True) == whole
    assert serve(direct, pod, tail_lines=1) == serve(fallback, pod, tail_lines=1) == b"done\n"
    assert serve(direct, pod, limit_bytes=100) == serve(fallback, pod, limit_bytes=100) == whole[:100]
    # The kubelet's timestamps (RFC3339Nano) before every record, a partial one's included (the long line's)
    stamped = serve(direct, pod, timestamps=True)
    assert re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z ", b"", stamped) == whole
    assert len(stamped.splitlines()) == len(serve(fallback, pod, timestamps=True).splitlines())



@pytest.mark.parametrize("api", [PodmanApi, ApiOnly])
def test_a_followed_log_ends_once_its_container_stopped(podman: Podman, api: type[PodmanApi]) -> None:
    with writer(podman, "for i in $(seq 1 20); do echo tick $i; sleep 0.1; done") as (name, container):
        wait_until(lambda: _status(container) in ("running", *ENDED), timeout=60, what="the writer started")
        followed = serve(api(podman.base_url, NODE), name, follow=True)
        assert _status(container) in ENDED
    assert followed == b"".join(f"tick {i}\n".encode() for i in range(1, 21))
