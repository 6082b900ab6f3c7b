"""Who may use a pod's volume files: kubelet's emptyDir mode and its fsGroup ownership, on the host's files.

kubelet makes an emptyDir world-writable (0777), so a container running as any user
can write it. With ``fsGroup``, every file of an emptyDir, ConfigMap or Secret
volume is given that group, with group read (and write, where the volume is
writable) and the setgid bit on directories, so new files inherit the group;
every container also runs with fsGroup as a supplemental group.
"""

from __future__ import annotations

import os
from pathlib import Path

EMPTY_DIR_MODE = 0o777
WRITABLE_MASK = 0o660
READ_ONLY_MASK = 0o440
DIR_BITS = 0o2110
"""setgid and the group's (and owner's) search bit, added to directories."""


def set_group(root: Path, gid: int, read_only: bool) -> None:
    """Give ``root`` and everything under it group ``gid`` with kubelet's fsGroup modes."""
    mask = READ_ONLY_MASK if read_only else WRITABLE_MASK
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        info = path.stat()
        bits = mask | (DIR_BITS if path.is_dir() else 0)
        if info.st_gid != gid:
            os.chown(path, -1, gid)
        if (info.st_mode & 0o7777) | bits != info.st_mode & 0o7777:
            os.chmod(path, (info.st_mode & 0o7777) | bits)


def prepare_owner(directory: Path, kind: str, fs_group: int | None) -> None:
    """After a volume's files were (re)written: the emptyDir mode, then the pod's fsGroup."""
    if kind == "emptyDir":
        os.chmod(directory, EMPTY_DIR_MODE | (directory.stat().st_mode & 0o2000))
    if fs_group is not None:
        set_group(directory, fs_group, read_only=kind in ("configMap", "secret"))
