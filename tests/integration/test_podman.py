"""The podman fixture runs real busybox containers through podman-py."""

from __future__ import annotations

import time

from podman.domain.containers import Container

from tests.fixtures.podman import BUSYBOX_IMAGE, Podman
from tests.fixtures.processes import wait_until


def logs(container: Container) -> bytes:
    output = container.logs(stdout=True, stderr=True)
    return output if isinstance(output, bytes) else b"".join(output)


def test_busybox_container_lifecycle(podman: Podman) -> None:
    with podman.client() as client:
        assert client.images.exists(BUSYBOX_IMAGE)
        container = client.containers.create(
            BUSYBOX_IMAGE,
            command=["sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 1; done"],
            name=f"edgehive-test-{time.monotonic_ns()}",
            init=True,  # without an init process, sh ignores SIGTERM as PID 1 and stop waits the timeout
            network_mode="none",
        )
        try:
            container.start()
            container.reload()
            assert container.attrs["State"]["Running"] is True

            code, (out, err) = container.exec_run(["sh", "-c", "echo hello; echo oops >&2; exit 3"], demux=True)
            assert code == 3
            assert out == b"hello\n"
            assert err == b"oops\n"

            wait_until(lambda: b"started" in logs(container), timeout=10, what="the container's first log line")

            # PID 1 is podman's init (catatonit), which forwards SIGTERM to sh.
            code, (pid1, _) = container.exec_run(["cat", "/proc/1/cmdline"], demux=True)
            assert code == 0
            assert b"init" in pid1

            container.stop(timeout=30)
            container.reload()
            assert container.attrs["State"]["Running"] is False
            assert container.attrs["State"]["ExitCode"] == 0  # the trap ran: it got SIGTERM, not SIGKILL
            assert b"bye" in logs(container)
        finally:
            container.remove(force=True)
        assert not client.containers.exists(container.id)
