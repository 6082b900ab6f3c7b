"""kubelet's hostPath ``type`` check, on the host's files: for a pod's hostPath volumes and for the hostPath and
local PersistentVolumes of its claims (claims.py), so that the rule is written once.

kubelet checks the type when it sets the volume up, before any container is made; a failed check is a
FailedMount that it retries, the pod Pending with its containers waiting in ContainerCreating. EdgeD does the
same: ``MountFailed`` keeps the pod waiting with kubelet's message (the volume, the path and what it is not),
and the next pass checks again, so a socket that appears later (a daemon started after the pod) is mounted.

Type "" is no check at all. A missing path is then made a directory (0755): what every runtime under kubelet
does with a missing bind-mount source (dockershim, containerd and CRI-O make it), not what podman does (its
bind mount of a missing source fails), so EdgeD makes it before podman mounts it.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.errors import EdgeError

HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
DIR_MODE = 0o755
FILE_MODE = 0o644

_IS = {"Directory": (Path.is_dir, "a directory"), "File": (Path.is_file, "a file"),
       "Socket": (Path.is_socket, "a socket file"), "CharDevice": (Path.is_char_device, "a character device"),
       "BlockDevice": (Path.is_block_device, "a block device")}


class MountFailed(EdgeError):
    """A volume could not be set up on the host (yet): the pod waits in ContainerCreating, and it is tried again."""


def check_host_path(volume: str, path: Path, kind: str) -> None:
    """Make or check ``path`` as kubelet does for a hostPath of type ``kind`` (one of HOST_PATH_TYPES)."""
    try:
        wrong = _check(path, kind)
    except OSError as exc:
        raise MountFailed(f'MountVolume.SetUp failed for volume "{volume}" : {exc.strerror or exc}: '
                          f"{path}") from None
    if wrong:
        raise MountFailed(f'MountVolume.SetUp failed for volume "{volume}" : hostPath type check failed: '
                          f"{path} is not {wrong}")


def _check(path: Path, kind: str) -> str | None:
    """What ``path`` should have been (``a directory``), or None when it passes (made if need be)."""
    if kind not in HOST_PATH_TYPES:
        raise ValueError(f"{kind!r} is not a hostPath type")
    exists = path.exists()  # as kubelet's, through symbolic links
    if kind == "" or (kind == "DirectoryOrCreate" and not exists):
        if not exists:
            path.mkdir(DIR_MODE, parents=True, exist_ok=True)
        return None
    if kind == "FileOrCreate" and not exists:
        # The parent is not made: kubelet's FileOrCreate fails when it is missing.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        return None
    test, what = _IS[kind.removesuffix("OrCreate")]
    return None if test(path) else what
