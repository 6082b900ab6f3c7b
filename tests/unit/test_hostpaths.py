"""kubelet's hostPath type check on real files of each kind, and the size and mounts of a Memory emptyDir."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.edged.hostpaths import HOST_PATH_TYPES, MountFailed, check_host_path
from edge.edged.memorydirs import _unescape, mount_points, mount_tmpfs, pod_memory_limit, tmpfs_size, unmount_under
from edge.edged.podspec import plan_pod
from edge.edged.volumes import Volumes

MI = 1 << 20


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """One path of each kind kubelet tells apart: directory, file, socket, character and block device."""
    found = {"Directory": tmp_path / "dir", "File": tmp_path / "file", "Socket": tmp_path / "sock",
             "CharDevice": tmp_path / "null", "BlockDevice": tmp_path / "loop"}
    found["Directory"].mkdir()
    found["File"].write_text("x")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(found["Socket"]))
    os.mknod(found["CharDevice"], stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(found["BlockDevice"], stat.S_IFBLK | 0o600, os.makedev(7, 0))
    yield found
    listener.close()


@pytest.mark.parametrize("kind", ["Directory", "File", "Socket", "CharDevice", "BlockDevice"])
def test_each_type_takes_only_its_kind_of_file(paths: dict[str, Path], kind: str) -> None:
    check_host_path("v", paths[kind], kind)
    for other, path in paths.items():
        if other != kind:
            with pytest.raises(MountFailed, match=f'^MountVolume.SetUp failed for volume "v" : hostPath type check '
                                                  f"failed: {path} is not a"):
                check_host_path("v", path, kind)
    with pytest.raises(MountFailed, match="is not a"):
        check_host_path("v", paths["Directory"] / "missing", kind)  # nothing made for these types
    assert not (paths["Directory"] / "missing").exists()


def test_the_or_create_types_make_what_is_missing_and_check_what_is_there(paths: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    made = tmp_path / "a" / "b"
    check_host_path("v", made, "DirectoryOrCreate")
    assert made.is_dir()
    assert stat.S_IMODE(made.stat().st_mode) == 0o755 & ~_umask()
    with pytest.raises(MountFailed, match="is not a directory"):
        check_host_path("v", paths["File"], "DirectoryOrCreate")
    created = tmp_path / "new-file"
    check_host_path("v", created, "FileOrCreate")
    assert created.is_file()
    assert created.read_bytes() == b""
    assert stat.S_IMODE(created.stat().st_mode) == 0o644 & ~_umask()
    with pytest.raises(MountFailed, match="is not a file"):
        check_host_path("v", paths["Socket"], "FileOrCreate")
    # As kubelet's: FileOrCreate makes no parent directory.
    with pytest.raises(MountFailed, match=f'volume "v" : No such file or directory: {tmp_path}/no/such'):
        check_host_path("v", tmp_path / "no" / "such", "FileOrCreate")


def test_no_type_checks_nothing_and_makes_a_missing_path_a_directory(paths: dict[str, Path], tmp_path: Path) -> None:
    for path in paths.values():
        check_host_path("v", path, "")  # a file, a socket, a device: mounted as they are
    check_host_path("v", tmp_path / "c" / "d", "")
    assert (tmp_path / "c" / "d").is_dir()
    assert "" in HOST_PATH_TYPES
    assert len(HOST_PATH_TYPES) == 8


def test_a_memory_empty_dir_is_sized_as_kubelet_sizes_it() -> None:
    def spec(*limits: str | None, init: str | None = None, overhead: str | None = None) -> dict[str, object]:
        def container(limit: str | None) -> dict[str, object]:
            return {"name": "c", "resources": {"limits": {"memory": limit}} if limit else {}}
        return {"containers": [container(v) for v in limits],
                "initContainers": [container(init)] if init else [],
                **({"overhead": {"memory": overhead}} if overhead else {})}

    assert pod_memory_limit(spec("64Mi", "32Mi")) == 96 * MI
    assert pod_memory_limit(spec("64Mi", "32Mi", init="128Mi")) == 128 * MI
    assert pod_memory_limit(spec("64Mi", overhead="1Mi")) == 65 * MI
    assert pod_memory_limit(spec("64Mi", None)) is None  # one container without a limit: the pod has none
    assert tmpfs_size(spec("64Mi"), None, 1024 * MI) == 64 * MI
    assert tmpfs_size(spec("64Mi"), 16 * MI, 1024 * MI) == 16 * MI
    assert tmpfs_size(spec("64Mi"), 256 * MI, 1024 * MI) == 64 * MI  # a sizeLimit above what the pod may use
    assert tmpfs_size(spec(None), None, 1024 * MI) == 1024 * MI  # the node's allocatable
    assert tmpfs_size(spec(None), None, None) is None


def test_a_tmpfs_is_mounted_once_and_unmounted_with_the_pod(tmp_path: Path) -> None:
    pod_dir = tmp_path / "pod with space"
    volume = pod_dir / "volumes" / "m"
    mount_tmpfs("m", volume, 8 * MI)
    try:
        assert os.path.ismount(volume)
        assert str(volume) in mount_points()
        (volume / "f").write_text("kept")
        mount_tmpfs("m", volume, 8 * MI)  # again (EdgeD restarted): the same tmpfs, not a second one over it
        assert (volume / "f").read_text() == "kept"
        assert [p for p in mount_points() if p == str(volume)] == [str(volume)]
        info = os.statvfs(volume)
        assert info.f_blocks * info.f_frsize == 8 * MI
    finally:
        unmount_under(pod_dir)
    assert not os.path.ismount(volume)
    assert not (volume / "f").exists()
    unmount_under(pod_dir)  # nothing mounted: nothing done


def test_mountinfo_escapes() -> None:
    assert _unescape(r"/a\040b\011c\134d") == "/a b\tc\\d"
    assert _unescape("/plain") == "/plain"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_volume_holds_up_none_of_the_others(tmp_path: Path) -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
           "spec": {"containers": [{"name": "main", "image": "i"}],
                    "volumes": [{"name": "gone", "hostPath": {"path": str(tmp_path / "gone"), "type": "Directory"}},
                                {"name": "scratch", "emptyDir": {}}]}}
    volumes = Volumes(tmp_path / "edged")
    with pytest.raises(MountFailed, match='volume "gone" : hostPath type check failed'):
        volumes.prepare(plan_pod(pod, "edge-1", lambda key: None))
    assert stat.S_IMODE((volumes.pod_dir("u1") / "volumes" / "scratch").stat().st_mode) == 0o777
