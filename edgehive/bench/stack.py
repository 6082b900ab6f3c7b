"""``edgehive bench stack``: the image's size, one component container's start, the compose stack's time to healthy.

The component start is measured against a baseline from the same run: the same
component as a plain process on this host, both timed from launch until its health
file says ``up`` (broker connected and subscribed). The container's health file is in
a directory mounted from the host, so neither measurement pays for a ``podman exec``.
The stack's time to healthy runs from ``podman-compose up -d`` until every
container's own healthcheck passes (``podman healthcheck run``, since podman 4.3
has no healthcheck timer without systemd).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from broker.embedded import BrokerSettings
from broker.launch import broker_argv, wait_ready
from edgehive.bench.harness import BenchError, free_port, process, progress_printer
from edgehive.compose import IMAGES, ComposeError, ComposeStack, missing_images, podman
from runtime.healthfile import check
from runtime.url import BrokerUrl

COMPONENT = "metamanager"
STACK_GOAL_S = 30.0


@dataclass
class StackReport:
    image_mb: float
    apiserver_image_mb: float
    component: str
    component_start_s: float
    host_process_start_s: float
    start_ratio: float
    stack_up_s: float
    stack_healthy_s: float
    containers: int
    runs: int


def _image_mb(image: str) -> float:
    return round(int(podman("image", "inspect", image, "--format", "{{.Size}}").stdout.strip()) / 1e6, 1)


def _wait_up(health_file: Path, t0: float, timeout: float, what: str) -> float:
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if check(health_file).healthy:
            return time.monotonic() - t0
        time.sleep(0.01)
    raise BenchError(f"bench: {what} did not report up within {timeout:.0f} s")


def _component_starts(work: Path, runs: int) -> tuple[float, float]:
    """Median seconds to up: (container, host process)."""
    port = free_port()
    settings = BrokerSettings(listen=(f"127.0.0.1:{port}",))
    (work / "broker").mkdir()
    container_times: list[float] = []
    host_times: list[float] = []
    with process(broker_argv("mosquitto", settings, work / "broker"), work / "broker.log"):
        if not wait_ready(BrokerUrl("127.0.0.1", port), 20):
            raise BenchError(f"bench: the broker did not start; see {work}/broker.log")
        for i in range(runs):
            run_dir = work / f"run{i}"
            (run_dir / "health").mkdir(parents=True)
            (run_dir / "data").mkdir()
            for d in (run_dir / "health", run_dir / "data"):
                os.chown(d, 10001, 10001)
            name = f"edgehive-bench-{uuid.uuid4().hex[:8]}"
            t0 = time.monotonic()
            podman("run", "-d", "--name", name, "--network", "host", "-e", f"EDGEHIVE_BROKER=mqtt://127.0.0.1:{port}",
                   "-e", "EDGEHIVE_NODE=bench-node", "-v", f"{run_dir / 'health'}:/run/edgehive",
                   "-v", f"{run_dir / 'data'}:/var/lib/edgehive", IMAGES[0], "run", COMPONENT,
                   "--db", "/var/lib/edgehive/metamanager.db")
            try:
                container_times.append(_wait_up(run_dir / "health" / "health", t0, 60, "the container"))
            finally:
                podman("rm", "-f", "-t", "5", name, check=False)
            health = run_dir / "host-health"
            env = {**os.environ, "EDGEHIVE_HEALTH_FILE": str(health), "EDGEHIVE_BROKER": f"mqtt://127.0.0.1:{port}",
                   "EDGEHIVE_NODE": "bench-node"}
            t0 = time.monotonic()
            child = subprocess.Popen([sys.executable, "-m", f"edge.{COMPONENT}", "--db", str(run_dir / "host.db")],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                host_times.append(_wait_up(health, t0, 60, "the host process"))
            finally:
                child.terminate()
                child.wait(timeout=20)
    return sorted(container_times)[len(container_times) // 2], sorted(host_times)[len(host_times) // 2]


def bench_stack(runs: int = 3, progress: bool = True) -> StackReport:
    say = progress_printer("stack", progress)
    missing = missing_images()
    if missing:
        raise BenchError(f"bench: images {', '.join(missing)} are missing; build them with scripts/images")
    with tempfile.TemporaryDirectory(prefix="edgehive-bench-stack-") as tmp:
        work = Path(tmp)
        say(f"{COMPONENT}: {runs} starts as a container and as a host process")
        container_s, host_s = _component_starts(work, runs)
        say("the compose stack: podman-compose up -d, then every healthcheck")
        stack = ComposeStack(f"ehbench{uuid.uuid4().hex[:6]}", work / "stack")
        try:
            stack.start_podman_service()
            t0 = time.monotonic()
            stack.up()
            up_s = time.monotonic() - t0
            healthy_s = up_s + stack.wait_healthy(timeout=180, progress=say)
            containers = len(stack.containers())
        except ComposeError as exc:
            raise BenchError(f"bench: {exc}") from exc
        finally:
            say("podman-compose down")
            stack.down()
    return StackReport(
        image_mb=_image_mb(IMAGES[0]), apiserver_image_mb=_image_mb(IMAGES[1]), component=COMPONENT,
        component_start_s=round(container_s, 2), host_process_start_s=round(host_s, 2),
        start_ratio=round(container_s / host_s, 2), stack_up_s=round(up_s, 1), stack_healthy_s=round(healthy_s, 1),
        containers=containers, runs=runs,
    )


def print_report(report: StackReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"image_mb": report.image_mb, "component_start_s": report.component_start_s,
                          "stack_healthy_s": report.stack_healthy_s, "details": asdict(report)}))
        return
    print(f"stack benchmark ({report.runs} runs for the component start)")
    print(f"  image localhost/edgehive        {report.image_mb:>7.0f} MB "
          f"(apiserver image {report.apiserver_image_mb:.0f} MB)")
    print(f"  {report.component} start to up  container {report.component_start_s:.2f} s, host process "
          f"{report.host_process_start_s:.2f} s, ratio {report.start_ratio:.2f}")
    print(f"  compose stack ({report.containers} containers): up -d returned after {report.stack_up_s:.1f} s, "
          f"all healthy after {report.stack_healthy_s:.1f} s (goal <= {STACK_GOAL_S:.0f} s)")
