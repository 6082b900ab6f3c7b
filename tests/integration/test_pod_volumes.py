"""hostPath types and a pod-wide Memory emptyDir, on real podman through a real edge node."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from edge.edged.memorydirs import mount_points
from schemas.envelope import Op
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.support.cloud import FakeCloud
from tests.support.edge_node import EdgeNode, Link
from tests.support.pods import IMAGE, NS, exec_output, pod, pod_exists, send, status_where

Node = tuple[EdgeNode, Link, FakeCloud]


def run_in(node: EdgeNode, pod_name: str, container: str, argv: list[str]) -> tuple[int, str]:
    """``argv`` in the named running container of the pod: (exit code, output)."""
    code, out, err = exec_output(node.podman.base_url, pod_name, argv, container=container)
    return code, out + err


def running(status: dict[str, Any]) -> bool:
    return status["phase"] == "Running" and all("running" in c["state"] for c in status["containerStatuses"])


def test_file_and_socket_host_paths_mount_and_a_directory_that_is_missing_waits(edge_node: Node,
                                                                                tmp_path: Path) -> None:
    node, _link, cloud = edge_node
    host = tmp_path / "host"
    host.mkdir()
    (host / "config").write_text("from the host\n")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(host / "agent.sock"))
    listener.listen(1)
    missing = host / "later"
    try:
        send(cloud, pod("paths", "sleep 3600",
                        volumes=[{"name": "config", "hostPath": {"path": str(host / "config"), "type": "File"}},
                                 {"name": "agent", "hostPath": {"path": str(host / "agent.sock"), "type": "Socket"}},
                                 {"name": "made", "hostPath": {"path": str(host / "made.txt"),
                                                               "type": "FileOrCreate"}}],
                        container={"volumeMounts": [{"name": "config", "mountPath": "/etc/app.conf"},
                                                    {"name": "agent", "mountPath": "/run/agent.sock"},
                                                    {"name": "made", "mountPath": "/made.txt"}]}))
        send(cloud, pod("waits", "sleep 3600",
                        volumes=[{"name": "later", "hostPath": {"path": str(missing), "type": "Directory"}}],
                        container={"volumeMounts": [{"name": "later", "mountPath": "/later"}]}))
        status_where(cloud, "paths", running, "paths Running")
        assert run_in(node, "paths", "main", ["cat", "/etc/app.conf"]) == (0, "from the host\n")
        # The host's listening socket itself (busybox has no client for a unix socket: its type is the proof).
        assert run_in(node, "paths", "main", ["test", "-S", "/run/agent.sock"])[0] == 0
        assert (host / "made.txt").is_file()
        assert (host / "made.txt").stat().st_mode & 0o777 == 0o644

        # Directory on a missing path: kubelet's FailedMount, the pod waiting with the volume and type named...
        waiting = status_where(cloud, "waits", lambda s: s["containerStatuses"][0]["state"].get("waiting"),
                               "waits waiting for its directory")
        state = waiting["containerStatuses"][0]["state"]["waiting"]
        assert waiting["phase"] == "Pending"
        assert state["reason"] == "ContainerCreating"
        assert state["message"] == (f'MountVolume.SetUp failed for volume "later" : hostPath type check failed: '
                                    f"{missing} is not a directory")
        assert not missing.exists()  # not made: type Directory must exist
        # ... checked again, as kubelet retries: once the directory is there, the pod runs.
        missing.mkdir()
        status_where(cloud, "waits", running, "waits Running once its directory exists")
    finally:
        listener.close()


def test_a_memory_empty_dir_is_one_tmpfs_shared_by_the_pods_containers(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    writer = {"name": "writer", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
              "command": ["sh", "-c", "echo shared > /cache/note; sleep 3600"],
              "resources": {"limits": {"memory": "64Mi"}},
              "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}
    reader = {"name": "reader", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
              "resources": {"limits": {"memory": "64Mi"}},
              "volumeMounts": [{"name": "cache", "mountPath": "/data"}]}
    spec = pod("mem", "", containers=[writer, reader], securityContext={"fsGroup": 4321},
               volumes=[{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}])
    send(cloud, spec)
    status_where(cloud, "mem", running, "mem Running")
    wait_until(lambda: run_in(node, "mem", "reader", ["cat", "/data/note"]) == (0, "shared\n"), timeout=20,
               what="the reader seeing the writer's file")
    volume = node.data / "edged" / "pods" / spec["metadata"]["uid"] / "volumes" / "cache"
    # One tmpfs of 16Mi (the sizeLimit, under the pod's 128Mi), on the host and in both containers.
    assert os.path.ismount(volume)
    info = os.statvfs(volume)
    assert info.f_blocks * info.f_frsize == 16 << 20
    for container, target in (("writer", "/cache"), ("reader", "/data")):
        code, mounts = run_in(node, "mem", container, ["cat", "/proc/mounts"])
        assert code == 0
        assert [line.split()[2] for line in mounts.splitlines() if line.split()[1] == target] == ["tmpfs"]
    # fsGroup: the tmpfs is the group's (setgid), as a disk emptyDir is.
    assert volume.stat().st_gid == 4321
    assert volume.stat().st_mode & 0o2000

    # EdgeD restarted: the same tmpfs, with its file, and no second mount over it.
    node.stop("edged")
    node.start("edged")
    status_where(cloud, "mem", running, "mem Running after EdgeD's restart")
    assert [p for p in mount_points() if p == str(volume)] == [str(volume)]
    assert (volume / "note").read_text() == "shared\n"

    deleting = dict(spec, metadata={**spec["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z",
                                    "deletionGracePeriodSeconds": 0})
    send(cloud, deleting, rv="2")
    wait_until(lambda: not pod_exists(node, "mem"), timeout=30, what="mem's podman pod removed")
    cloud.send_and_wait(cloud.envelope(Op.DELETE, ResourceKey(NS, "pod", "mem"), deleting))
    wait_until(lambda: not volume.parent.parent.exists(), timeout=30, what="mem's pod directory removed")
    assert str(volume) not in mount_points()
