"""Drive the compose stack with podman-compose: up, health, down, and what is left behind.

Shared by the compose tests and ``edgehive bench stack``. podman 4.3 cannot run
healthchecks on a timer without systemd (and podman-compose then ignores
``condition: service_healthy``), so health is asked for directly: ``podman
healthcheck run`` runs the image's check and records the answer, as the timer would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edgehive.errors import EdgehiveError

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
LOCAL_APISERVER = ROOT / "compose.local-apiserver.yml"
HA = ROOT / "compose.ha.yml"
"""The large-fleet override: a 3-member NATS cluster, CloudHub replicas, controller candidates."""
IMAGES = ("localhost/edgehive:latest", "localhost/edgehive-apiserver:latest")
PROJECT_LABEL = "io.podman.compose.project"
ONE_SHOT_LABEL = "io.edgehive.one-shot"
"""A service that does one thing and exits (compose.ha.yml's edge-1-node): done, not unhealthy, once it exited 0."""
CNI_IPAM_DIR = Path("/var/lib/cni/networks")
"""Where CNI's host-local IPAM plugin keeps each network's addresses (podman's CNI backend)."""


class ComposeError(EdgehiveError, RuntimeError):
    """podman-compose or podman failed; the message holds its output and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def podman(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise ComposeError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def missing_images() -> list[str]:
    return [image for image in IMAGES if podman("image", "exists", image, check=False).returncode != 0]


@dataclass
class ComposeStack:
    """One project of docker-compose.yml (+ the local API server override, + ``overrides``), on ports of its own."""

    project: str
    work_dir: Path
    cloud_broker: str = "mosquitto"
    overrides: tuple[Path, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    podman_service: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        for name in ("apiserver", "cloud_broker", "cloud_broker_2", "cloud_broker_3", "edge_broker"):
            self.ports.setdefault(name, free_port())
        self.work_dir.mkdir(parents=True, exist_ok=True)

    @property
    def podman_socket(self) -> Path:
        return self.work_dir / "podman.sock"

    @property
    def edged_dir(self) -> Path:
        return self.work_dir / "edged"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "EDGEHIVE_APISERVER_PORT": str(self.ports["apiserver"]),
            "EDGEHIVE_CLOUD_BROKER_PORT": str(self.ports["cloud_broker"]),
            "EDGEHIVE_CLOUD_BROKER_2_PORT": str(self.ports["cloud_broker_2"]),  # compose.ha.yml's members
            "EDGEHIVE_CLOUD_BROKER_3_PORT": str(self.ports["cloud_broker_3"]),
            "EDGEHIVE_EDGE_1_BROKER_PORT": str(self.ports["edge_broker"]),
            "EDGEHIVE_PODMAN_SOCKET": str(self.podman_socket),
            "EDGEHIVE_EDGE_1_EDGED_DIR": str(self.edged_dir),
            "EDGEHIVE_CLOUD_BROKER": self.cloud_broker,
        }

    def compose(self, *args: str, timeout: float = 300.0) -> str:
        argv = [sys.executable, "-m", "podman_compose", "-p", self.project]
        for f in (COMPOSE_FILE, LOCAL_APISERVER, *self.overrides):
            argv += ["-f", str(f)]
        argv += args
        log = self.work_dir / "compose.log"
        with log.open("a") as out:
            out.write(f"\n$ podman-compose {' '.join(args)}\n")
            out.flush()
            result = subprocess.run(argv, env=self.env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=out, text=True,
                                    timeout=timeout, check=False)
            out.write(result.stdout)
        if result.returncode != 0:
            raise ComposeError(f"podman-compose {' '.join(args)} failed ({result.returncode}); see {log}")
        return result.stdout

    def start_podman_service(self) -> None:
        """EdgeD's podman: the host's storage, on a socket of this stack's own."""
        self.podman_socket.unlink(missing_ok=True)
        self.edged_dir.mkdir(parents=True, exist_ok=True)
        self.podman_service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.podman_socket}"],
            stdout=subprocess.DEVNULL, stderr=(self.work_dir / "podman-service.log").open("w"))
        deadline = time.monotonic() + 15
        while not self.podman_socket.exists():
            if time.monotonic() > deadline or self.podman_service.poll() is not None:
                raise ComposeError(f"podman system service did not start; see {self.work_dir}/podman-service.log")
            time.sleep(0.05)

    def up(self) -> None:
        missing = missing_images()
        if missing:
            raise ComposeError(f"images {', '.join(missing)} are missing: run scripts/images "
                               "(or scripts/setup --images)")
        if self.podman_service is None:
            self.start_podman_service()
        self.compose("up", "-d")

    def up_healthy(self, timeout: float = 120.0) -> float:
        """``up``, then seconds until every container is healthy.

        podman 4.3's CNI backend can miss a network created a moment before ("unable to find network ...
        network not found" when starting the first container): the stack then comes up once more."""
        t0 = time.monotonic()
        try:
            self.up()
        except ComposeError as exc:
            print(f"\nfirst podman-compose up failed, once more after down: {exc}")
            self.down()
            self.up()
        self.wait_healthy(timeout=timeout)
        return time.monotonic() - t0

    def containers(self) -> dict[str, str]:
        """Service name -> container name, for this project's containers (running or not)."""
        out = podman("ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.project}", "--format", "json").stdout
        found: dict[str, str] = {}
        for item in json.loads(out or "[]"):
            labels = item.get("Labels") or {}
            found[labels.get("com.docker.compose.service", "?")] = item["Names"][0]
        return found

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def healthy(self, service: str) -> bool:
        """The healthcheck's verdict; for a one-shot service (label ONE_SHOT_LABEL), that it exited 0."""
        container = self.container(service)
        out = podman("inspect", container, "--format",
                     f'{{{{index .Config.Labels "{ONE_SHOT_LABEL}"}}}} {{{{.State.Status}}}} {{{{.State.ExitCode}}}}',
                     check=False).stdout.split()
        if out[:1] == ["true"]:
            # "stopped" until podman's cleanup of the ended container has run, "exited" after
            return len(out) == 3 and out[1] in ("exited", "stopped") and out[2] == "0"
        return podman("healthcheck", "run", container, check=False, timeout=30).returncode == 0

    def unhealthy(self) -> list[str]:
        services = sorted(self.containers())
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(self.healthy, services))
        return [s for s, ok in zip(services, results, strict=True) if not ok]

    def wait_healthy(self, timeout: float = 120.0, progress: Callable[[str], None] | None = None) -> float:
        """Seconds until every container's healthcheck passed; raises with the laggards after ``timeout``."""
        t0 = time.monotonic()
        last_note = 0.0
        while True:
            waiting = self.unhealthy()
            if not waiting and self.containers():
                return time.monotonic() - t0
            elapsed = time.monotonic() - t0
            if elapsed > timeout:
                raise ComposeError(f"not healthy after {timeout:.0f} s: {', '.join(waiting)}; "
                                   f"see podman logs {self.project}_<service>_1")
            if progress is not None and elapsed - last_note >= 5:
                progress(f"{elapsed:.0f} s, waiting for {', '.join(waiting)}")
                last_note = elapsed
            time.sleep(0.2)

    def restart_count(self, service: str) -> int:
        out = podman("inspect", self.container(service), "--format", "{{.RestartCount}}").stdout
        return int(out.strip() or 0)

    def main_pid(self, service: str) -> int:
        return int(podman("inspect", self.container(service), "--format", "{{.State.Pid}}").stdout.strip())

    def logs(self, service: str, tail: int = 40) -> str:
        """The last ``tail`` lines a service's container wrote (stdout and stderr), for a failure's report."""
        result = podman("logs", "--tail", str(tail), self.container(service), check=False, timeout=30)
        return (result.stdout + result.stderr).rstrip()

    def copy_out(self, service: str, path: str, dest: Path) -> Path:
        podman("cp", f"{self.container(service)}:{path}", str(dest))
        return dest

    def down(self) -> None:
        try:
            self.compose("down", "-v", "-t", "20")
            self.forget_network_addresses()
        finally:
            if self.podman_service is not None:
                self.podman_service.terminate()
                self.podman_service.wait(timeout=20)
                self.podman_service = None

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def forget_network_addresses(self) -> None:
        """Remove the address book of this project's network once the network is gone.

        With podman's CNI backend, ``podman network rm`` leaves the host-local IPAM plugin's
        directory of the network behind (its lock and last reserved address), one more for every
        stack brought up and down. Only our own network's is removed, and only when it holds no
        address: an address file there would be a container still attached."""
        book = CNI_IPAM_DIR / self.network
        if not book.is_dir() or podman("network", "exists", self.network, check=False).returncode == 0:
            return
        if all(f.name == "lock" or f.name.startswith("last_reserved_ip") for f in book.iterdir()):
            shutil.rmtree(book, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Containers, pods, networks, volumes and the network's CNI address book of this project that still exist."""
        label = f"label={PROJECT_LABEL}={self.project}"
        found = [f"container {n}" for n in self._names("ps", "-a", "--filter", label, "--format", "{{.Names}}")]
        found += [f"pod {n}" for n in self._names("pod", "ps", "--filter", f"name=pod_{self.project}",
                                                   "--format", "{{.Name}}")]
        found += [f"network {n}" for n in self._names("network", "ls", "--filter", label, "--format", "{{.Name}}")]
        found += [f"volume {n}" for n in self._names("volume", "ls", "--filter", label, "--format", "{{.Name}}")]
        if (CNI_IPAM_DIR / self.network).exists():
            found.append(f"CNI address book {CNI_IPAM_DIR / self.network}")
        return found

    @staticmethod
    def _names(*args: str) -> list[str]:
        return [line for line in podman(*args).stdout.splitlines() if line.strip()]
