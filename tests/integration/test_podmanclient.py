"""edge.podmanclient against a real podman service (the session's own, tests/fixtures/podman.py): every call
EdgeD makes, the errors it tells apart (404 NotFound, 409 and podman's message), the create JSON taking effect,
exec's demultiplexed output, and a pull from the session's private registry with and without credentials."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.podmanclient.client import PodmanClient, image_reference, registry_auth
from edge.podmanclient.specgen import BindMount, ContainerSpec, container_json
from edge.podmanclient.transport import NotFound, PodmanError
from tests.fixtures.podman import BUSYBOX_IMAGE, Podman
from tests.fixtures.processes import require_executable, wait_until
from tests.fixtures.registry import Registry

LABEL = "io.edgehive.test/podmanclient"


@pytest.fixture
def client(podman: Podman) -> Iterator[PodmanClient]:
    yield PodmanClient(podman.base_url)
    podman_bin = require_executable("podman")
    for what in (["pod", "rm"], ["rm"]):
        subprocess.run([podman_bin, *podman.storage_flags, *what, "--force", "--time", "0", "--filter",
                        f"label={LABEL}"], check=False, capture_output=True, timeout=120)


def _name(what: str) -> str:
    return f"ehpc-{what}-{time.monotonic_ns()}"


def test_system_and_images(client: PodmanClient) -> None:
    assert client.ping()
    assert str(client.version().get("Version", "")).split(".")[0] >= "4"
    assert client.image_exists(BUSYBOX_IMAGE)
    assert not client.image_exists("localhost/no-such-image:1")
    assert client.image(BUSYBOX_IMAGE)["Config"]["Cmd"] == ["/bin/sh"]
    with pytest.raises(NotFound) as missing:
        client.image("localhost/no-such-image:1")
    assert missing.value.status == 404
    assert "no-such-image" in missing.value.message


def test_unreachable_service_is_a_podman_error() -> None:
    unreachable = PodmanClient("unix:///nonexistent/podman.sock")
    with pytest.raises(PodmanError) as caught:
        unreachable.ping()
    assert caught.value.status == 0
    with pytest.raises(ValueError, match="must be unix"):
        PodmanClient("ftp://x")


def test_pod_lifecycle_and_errors(client: PodmanClient) -> None:
    name = _name("pod")
    with pytest.raises(NotFound):
        client.pod(name)
    pod_id = client.create_pod({"name": name, "labels": {LABEL: name}, "hostname": "h1"})
    assert pod_id
    with pytest.raises(PodmanError) as twice:
        client.create_pod({"name": name, "labels": {LABEL: name}})
    assert twice.value.status == 409
    assert "already" in twice.value.message  # podman's own message, not a generic one
    assert [p["Name"] for p in client.pods({"label": [f"{LABEL}={name}"]})] == [name]
    assert client.pods({"label": [f"{LABEL}=nobody"]}) == []
    client.start_container(client.pod(name)["InfraContainerID"])
    infra = client.container(client.pod(name)["InfraContainerID"])
    assert infra["State"]["Status"] == "running"
    client.start_pod(name)
    client.stop_pod(name, 0)
    client.stop_pod(name, 0)  # nothing runs: podman's 304 is no error
    client.remove_pod(name, force=True)
    with pytest.raises(NotFound):
        client.remove_pod(name, force=True)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory user 1000 in the container can read (pytest's tmp_path is root's alone)."""
    made = Path(tempfile.mkdtemp(prefix="ehpc-", dir="/tmp"))
    made.chmod(0o755)
    (made / "f").write_text("from the host\n")
    yield made
    shutil.rmtree(made, ignore_errors=True)


def test_container_from_spec_exec_logs_stop(client: PodmanClient, host_dir: Path) -> None:
    pod = _name("pod")
    client.create_pod({"name": pod, "labels": {LABEL: pod}})
    name = _name("c")
    spec = ContainerSpec(
        image=BUSYBOX_IMAGE, name=name, pod=pod, labels={LABEL: name}, env={"A": "1", "PATH": "/bin:/usr/bin"},
        mounts=[BindMount(str(host_dir), "/mnt/host", True)], entrypoint=["/bin/sh", "-c"],
        command=["echo started; echo to-err >&2; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        working_dir="/tmp", mem_limit=64 * 1024 * 1024, init=True, privileged=False, read_only=True,
        read_write_tmpfs=False, no_new_privileges=True, stdin=False, tty=False, user="1000:1000", groups=["4000"],
        cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"], sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    container_id = client.create_container(container_json(spec))
    info = client.container(container_id)
    assert info["Name"] == name
    assert info["Config"]["Labels"][LABEL] == name
    assert "A=1" in info["Config"]["Env"]
    assert info["Config"]["WorkingDir"] == "/tmp"
    assert info["Config"]["User"] == "1000:1000"
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    # podman shows capabilities as what is dropped from its default set
    assert "CAP_CHOWN" in info["HostConfig"]["CapDrop"]
    assert "CAP_NET_BIND_SERVICE" not in info["HostConfig"]["CapDrop"]
    assert [(m["Destination"], m["RW"]) for m in info["Mounts"]] == [("/mnt/host", False)]
    with pytest.raises(PodmanError) as not_running:
        client.exec_run(container_id, ["true"])
    # podman 4.3 answers 500 here (409 in later versions); its message is what EdgeD reads (runtime.sandbox_lost)
    assert not_running.value.status in (409, 500)
    assert "state improper" in not_running.value.message
    assert "state improper" in str(not_running.value)

    client.start_container(container_id)
    code, out, err = client.exec_run(container_id, ["sh", "-c", "cat /mnt/host/f; id -u; echo oops >&2; exit 3"])
    assert (code, out, err) == (3, b"from the host\n1000\n", b"oops\n")
    code, out, err = client.exec_run(container_id, ["sh", "-c", "head -c 200000 /dev/zero"])
    assert (code, len(out), err) == (0, 200000, b"")  # many frames, demultiplexed whole
    wait_until(lambda: b"started" in client.logs(container_id, 10), timeout=30, what="the container's first line")
    assert client.logs(container_id, 10) == b"started\nto-err\n"
    assert [c["Id"] for c in client.containers({"label": [f"{LABEL}={name}"]})] == [container_id]
    client.kill_container(container_id, "SIGCONT")

    client.stop_container(container_id, 30)
    state = client.container(container_id)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)  # the trap ran: SIGTERM, not SIGKILL
    with pytest.raises(PodmanError) as stopped:
        client.kill_container(container_id, "SIGCONT")
    assert stopped.value.status in (409, 500)
    assert "state improper" in str(stopped.value)
    client.remove_container(container_id, force=True)
    with pytest.raises(NotFound):
        client.container(container_id)
    with pytest.raises(NotFound):
        client.start_container(container_id)


def test_image_reference_and_auth_header() -> None:
    assert image_reference("busybox") == "busybox:latest"
    assert image_reference("127.0.0.1:5000/a/b") == "127.0.0.1:5000/a/b:latest"
    assert image_reference("127.0.0.1:5000/a/b:1") == "127.0.0.1:5000/a/b:1"
    assert image_reference("a/b@sha256:0123") == "a/b@sha256:0123"
    assert registry_auth({"username": "u", "password": "p"}) == "eyJ1c2VybmFtZSI6ICJ1IiwgInBhc3N3b3JkIjogInAifQ=="


def test_pull_with_and_without_credentials(client: PodmanClient, registry: Registry, podman: Podman) -> None:
    subprocess.run([require_executable("podman"), *podman.storage_flags, "rmi", "--force", registry.image],
                   check=False, capture_output=True, timeout=120)
    assert not client.image_exists(registry.image)
    refused = [line for line in client.pull(registry.image) if line.get("error")]
    assert refused, "a pull without credentials must fail"
    assert "unauthorized" in str(refused[-1]["error"]).lower() or "authentication" in str(refused[-1]["error"])
    wrong = [line for line in client.pull(registry.image, {"username": registry.user, "password": "wrong"})
             if line.get("error")]
    assert wrong
    assert not client.image_exists(registry.image)
    lines = list(client.pull(registry.image, {"username": registry.user, "password": registry.password}))
    assert not [line for line in lines if line.get("error")], lines
    assert client.image_exists(registry.image)


def test_info_names_the_services_own_storage(client: PodmanClient, podman: Podman) -> None:
    """EdgeD's node claim (edge/edged/nodeclaim.py) is keyed by the storage podman reports."""
    assert client.info()["store"]["graphRoot"] == podman.root
