"""Memory emptyDirs: one tmpfs per pod volume, mounted by EdgeD under the pod's directory, as kubelet mounts it.

podman's own tmpfs mount is per container, so two containers of a pod would not share the volume; a podman
volume with tmpfs options is mounted while a container uses it and dropped when the last one stops, so a
restarted container would find it empty. A tmpfs of EdgeD's at ``<pod dir>/volumes/<name>``, bind-mounted
into every container like a disk emptyDir, is shared by the pod's containers, outlives their restarts and
EdgeD's (the mount belongs to the host), is gone after a reboot as kubelet's is, and is unmounted when the
pod's directory is removed. EdgeD must run as root in the host's mount namespace (podman's) to mount it.

Its size is kubelet's (SizeMemoryBackedVolumes): the node's allocatable memory, or less, the pod's memory limit
when every container has one, or less, the volume's sizeLimit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.edged.hostpaths import MountFailed
from edge.edged.quantity import quantity

MNT_DETACH = 2
MOUNTINFO = Path("/proc/self/mountinfo")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def tmpfs_size(spec: Mapping[str, Any], size_limit: float | None, node_memory: float | None) -> int | None:
    """The tmpfs's size in bytes: the least of the node's allocatable memory, the pod's memory limit and the
    volume's sizeLimit (each when known and above zero); None (the kernel's default, half the RAM) when none is."""
    sizes = [s for s in (node_memory, pod_memory_limit(spec), size_limit) if s is not None and s > 0]
    return int(min(sizes)) if sizes else None


def pod_memory_limit(spec: Mapping[str, Any]) -> float | None:
    """The pod cgroup's memory limit as kubelet sets it: the containers' limits summed, at least each init
    container's, plus the overhead; None when a container has no memory limit (the pod then has none)."""
    def limit(container: Any) -> float | None:
        limits = ((container.get("resources") or {}).get("limits") or {}) if isinstance(container, dict) else {}
        return quantity(limits["memory"]) if "memory" in limits else None

    apps = [limit(c) for c in spec.get("containers") or []]
    inits = [limit(c) for c in spec.get("initContainers") or []]
    if not apps or any(v is None for v in [*apps, *inits]):
        return None
    total = max([sum(v for v in apps if v is not None), *(v for v in inits if v is not None)])
    overhead = quantity((spec.get("overhead") or {}).get("memory", 0))
    return total + (overhead or 0)


def mount_tmpfs(volume: str, path: Path, size: int | None) -> None:
    """Mount a tmpfs at ``path`` unless one is there already (EdgeD restarted over the running pod)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        return
    options = "mode=0777" + (f",size={size}" if size else "")
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 0, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise MountFailed(f'MountVolume.SetUp failed for volume "{volume}" : mounting a tmpfs at {path}: '
                          f"{os.strerror(errno)} (EdgeD mounts a Memory emptyDir itself, so it must run as root "
                          "in the host's mount namespace)")


def unmount_under(root: Path) -> None:
    """Unmount every mount at or under ``root`` (a pod's directory), deepest first, so that removing the
    directory removes no tmpfs's files through its mount point and leaves no mount behind."""
    prefix = str(root).rstrip("/") + "/"
    for point in sorted((p for p in mount_points() if p == str(root) or p.startswith(prefix)), reverse=True):
        if _libc.umount2(os.fsencode(point), MNT_DETACH) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot unmount {point}: {os.strerror(errno)}")


def mount_points() -> list[str]:
    """The mount points of this mount namespace (mountinfo's fifth field, its octal escapes undone)."""
    points = []
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\040``-style octal escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
