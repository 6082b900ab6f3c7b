"""One component's container at a time, with testcontainers, beside a real broker on this host.

Each container shares the host's network (so it reaches the test's broker on
127.0.0.1) and keeps its SQLite files in a host directory mounted at the image's
volume. It must connect, pass the image's healthcheck, and on SIGTERM exit 0 with
its database intact: what a container engine's stop does to it in production.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.container import DockerContainer

from edgehive.compose import missing_images, podman
from schemas import topics
from schemas.envelope import Envelope, Group, Op, decode
from schemas.resource import ResourceKey
from tests.fixtures.brokers import Broker
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.slow

IMAGE = "localhost/edgehive:latest"
IMAGE_UID = 10001
NODE = "tc-node"


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The podman REST API (Docker-compatible) on a socket of our own, over the host's image store."""
    missing = missing_images()
    assert not missing, f"images {missing} are missing: run scripts/images (or scripts/setup --images)"
    work = tmp_path_factory.mktemp("tc")
    sock = work / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(sock.exists, timeout=15, what="the podman socket")
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST",)}
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    testcontainers_config.ryuk_disabled = True  # no reaper image here; each test removes its container
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host
    try:
        yield os.environ["DOCKER_HOST"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        service.terminate()
        service.wait(timeout=20)


@dataclass(frozen=True)
class Case:
    component: str
    args: tuple[str, ...]
    database: str | None  # the SQLite file it keeps in its volume
    table: str | None = None
    feed: Callable[[TestClient], None] | None = None  # something for it to store before it stops


def feed_metamanager(client: TestClient) -> None:
    """A ConfigMap as EdgeHub hands it over; MetaManager acknowledges it once committed."""
    key = ResourceKey("default", "configmap", "settings")
    envelope = Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT, res=key, rv="7",
                        body={"metadata": {"name": "settings", "namespace": "default", "uid": "u-1",
                                           "resourceVersion": "7"}, "data": {"mode": "fast"}})
    client.subscribe(topics.to_cloud())
    client.publish(topics.from_cloud("metamanager"), envelope.encode())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        message = client.expect(timeout=max(0.1, deadline - time.monotonic()))
        if message.topic == topics.to_cloud() and decode(message.payload).parent == envelope.id:
            return
    raise AssertionError("MetaManager did not acknowledge the ConfigMap")


CASES = [
    Case("metamanager", ("--db", "/var/lib/edgehive/metamanager.db"), "metamanager.db", "resource",
         feed_metamanager),
    Case("devicetwin", ("--db", "/var/lib/edgehive/devicetwin.db"), "devicetwin.db"),
    Case("edgehub", ("--outbox", "/var/lib/edgehive/outbox.db"), "outbox.db"),
    Case("eventbus", (), None),
]


def health(container: DockerContainer) -> tuple[bool, str]:
    """Run the image's own healthcheck, as the engine's timer would."""
    name = container.get_wrapped_container().name
    result = podman("healthcheck", "run", name, check=False, timeout=30)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


@pytest.mark.parametrize("case", CASES, ids=[c.component for c in CASES])
def test_component_container(docker_host: str, edgehive_broker: Callable[..., Broker], tmp_path: Path,
                             case: Case) -> None:
    broker = edgehive_broker("mosquitto")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, IMAGE_UID, IMAGE_UID)  # the image's non-root user owns its volume
    container = (DockerContainer(IMAGE)
                 .with_command(["run", case.component, *case.args])
                 .with_env("EDGEHIVE_NODE", NODE)
                 .with_env("EDGEHIVE_BROKER", f"mqtt://127.0.0.1:{broker.port}")
                 .with_volume_mapping(str(data), "/var/lib/edgehive", "rw")
                 .with_kwargs(network_mode="host"))
    container.start()
    try:
        with TestClient("127.0.0.1", broker.port) as client:
            client.subscribe(topics.status(case.component))
            status = wait_until(lambda: _status(client, case.component), timeout=30,
                                what=f"{case.component}'s retained status")
            assert status["state"] == "up"
            wait_until(lambda: health(container)[0], timeout=30, what=f"{case.component}'s healthcheck")
            if case.feed is not None:
                case.feed(client)
        wrapped = container.get_wrapped_container()
        wrapped.stop(timeout=20)  # SIGTERM, then SIGKILL after 20 s
        exit_code = wrapped.wait(timeout=30)["StatusCode"]
        logs = wrapped.logs().decode(errors="replace")
        assert exit_code == 0, f"{case.component} exited {exit_code} on SIGTERM:\n{logs[-2000:]}"
        assert "stopped" in logs
    finally:
        container.stop()
    if case.database:
        db = sqlite3.connect(data / case.database)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
            if case.table:
                assert db.execute(f"SELECT count(*) FROM {case.table}").fetchone()[0] == 1
        finally:
            db.close()


def _status(client: TestClient, component: str) -> dict[str, object] | None:
    try:
        message = client.expect(timeout=0.5)
    except Exception:
        return None
    if message.topic != topics.status(component) or not message.payload:
        return None
    body = decode(message.payload).body
    return body if isinstance(body, dict) and body.get("state") == "up" else None

