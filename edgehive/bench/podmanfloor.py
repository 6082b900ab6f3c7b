"""The floor under a pod's start: podman alone, making a pod and running one container in it.

What EdgeD cannot go below on this machine, measured twice with the bench's own podman storage:

- the command line: ``podman pod create`` (the pod and its infra container), then ``podman run -d --pod``
  (the container created, the infra container and the container started), each timed from the command's
  start to its exit. Each command is a new podman process, which costs more than the work itself on a
  loaded machine: this floor is high, never low.
- the REST API of the running service, as EdgeD calls it (pod create, container create, pod start), over
  its Unix socket with nothing but the standard library (only EdgeD imports podman's client).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

from edgehive.bench.harness import BenchError, percentiles
from edgehive.bench.system import IMAGE, Podman


@dataclass(frozen=True)
class PodmanFloor:
    pod_create_ms: dict[str, float]
    run_ms: dict[str, float]
    total_ms: dict[str, float]
    rounds: int
    rest_ms: dict[str, float]
    """Through the service's REST API: pod create + container create + pod start."""


def measure_floor(podman: Podman, rounds: int = 5) -> PodmanFloor:
    creates: list[int] = []
    runs: list[int] = []
    try:
        for i in range(rounds):
            name = f"bench-floor-{i}"
            start = time.perf_counter_ns()
            _run(podman, "pod", "create", "--name", name)
            made = time.perf_counter_ns()
            _run(podman, "run", "-d", "--pod", name, "--name", f"{name}-main", IMAGE, "sleep", "3600")
            creates.append(made - start)
            runs.append(time.perf_counter_ns() - made)
    finally:
        for i in range(rounds):
            podman.run("pod", "rm", "--force", "--time", "0", f"bench-floor-{i}")
    return PodmanFloor(percentiles(creates), percentiles(runs),
                       percentiles([c + r for c, r in zip(creates, runs, strict=True)]), rounds,
                       percentiles(_rest_rounds(podman, rounds)))


def _rest_rounds(podman: Podman, rounds: int) -> list[int]:
    took: list[int] = []
    try:
        for i in range(rounds):
            name = f"bench-floor-rest-{i}"
            start = time.perf_counter_ns()
            _call(podman, "/libpod/pods/create", {"name": name})
            _call(podman, "/libpod/containers/create", {"name": f"{name}-main", "pod": name, "image": IMAGE,
                                                        "command": ["sleep", "3600"]})
            _call(podman, f"/libpod/pods/{name}/start", None)
            took.append(time.perf_counter_ns() - start)
    finally:
        for i in range(rounds):
            podman.run("pod", "rm", "--force", "--time", "0", f"bench-floor-rest-{i}")
    return took


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def _call(podman: Podman, path: str, body: dict[str, Any] | None) -> None:
    connection = _UnixConnection(podman.url.removeprefix("unix://"))
    try:
        connection.request("POST", f"/v4.0.0{path}", body=json.dumps(body) if body is not None else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise BenchError(f"podman POST {path} answered {response.status}: {answer[:200]!r}")


def _run(podman: Podman, *args: str) -> None:
    result = podman.run(*args)
    if result.returncode != 0:
        raise BenchError(f"podman {' '.join(args[:2])} failed: {result.stderr.strip()}")
