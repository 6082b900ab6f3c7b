"""The files of a ConfigMap, Secret, projected or downward API volume, switched as one, writing only what changed.

kubelet's AtomicWriter layout, so that a container sees the whole old payload or the whole new one, never
a mix (one key new and another old) nor half a file::

    <volume>/..2026_12_04_22_38_27.ab12cd/   the payload (every file, subdirectories as the items ask)
    <volume>/..data -> ..2026_12_04_22_38_27.ab12cd    swapped by one rename(2)
    <volume>/<name> -> ..data/<name>        one symlink per top-level name, what the container opens

An update that leaves the payload as it is (the same paths, bytes and modes) writes nothing: no new
directory, no rename, no chmod. EdgeD plans a pod again, and writes its volumes, whenever anything of the pod changes (a
label for the downward API, a token rotating, an unrelated key), so this is the common case. An update that
changes some files writes only those: the others are hard-linked from the current payload into the new one
(one metadata operation each, no bytes copied, the same inode), which is safe because nothing ever writes a
payload file in place (every mount of these volumes is read-only, and a changed file is a new inode in a new
directory). A hard link that the filesystem refuses falls back to writing the file. kubelet's own writer
rewrites the whole payload on every change; this does not.

Paths are made relative and free of ``..`` by podspec.py; a first element starting with ``..`` is refused
there too, so no key can collide with the names above.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DATA = "..data"
"""The symlink to the current payload directory (kubelet's name: containers built for Kubernetes know it)."""
PAYLOAD_DIR_MODE = 0o755
"""A payload directory must be searchable by any container user, whatever the process's umask."""


@dataclass(frozen=True)
class Manifest:
    """What a payload directory holds: kept by the caller between calls, so as not to read the files back."""

    payload: str
    """The payload directory's name (``..<timestamp>.<random>``)."""
    files: dict[str, tuple[bytes, int]]
    """Relative path -> (a digest of the bytes, mode)."""


@dataclass
class Update:
    """What one ``write_files`` did: paths relative to the volume."""

    manifest: Manifest
    """What the volume holds now: the ``known`` of the next call."""

    written: list[str] = field(default_factory=list)
    """Files whose bytes were written (new or changed content, or a changed mode)."""
    linked: list[str] = field(default_factory=list)
    """Unchanged files hard-linked from the previous payload (no bytes written)."""
    removed: list[str] = field(default_factory=list)
    """Files of the previous payload that are no longer in it."""
    switched: bool = False
    """Whether ``..data`` now points at a new payload directory."""


def write_files(directory: Path, files: Mapping[str, tuple[bytes, int]], extra_mode: int = 0,
                gid: int | None = None, known: Manifest | None = None) -> Update:
    """Make ``directory`` show exactly ``files`` (relative path -> (content, mode)), switched atomically.

    ``extra_mode`` and ``gid``: the permission bits and group that the volume's owner gives its files
    (fsGroup, volumeowner.py). New files get them before the switch, so a container never sees one without
    them; and a file that has them is not "changed" for lacking them in ``files`` (without this, every pass
    under an fsGroup rewrote every file of mode 0400).

    ``known``: the manifest the last call returned for this directory. While ``..data`` still names its
    payload, the files are compared against it instead of being read back (a projected volume of 2,000
    ConfigMaps is re-planned on each of their changes: reading them all back each time was most of the cost),
    and an identical update touches nothing on disk but one readlink."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {rel: (content, mode | extra_mode) for rel, (content, mode) in files.items()}
    digests = {rel: (_digest(content), mode) for rel, (content, mode) in wanted.items()}
    old_dir = _current_payload(directory)
    trusted = known is not None and old_dir is not None and known.payload == old_dir.name
    old = _old_files(old_dir, known if trusted else None)
    unchanged = {rel for rel, digest in digests.items() if old.get(rel) == digest}
    update = Update(Manifest(old_dir.name if old_dir is not None else "", digests))
    if old_dir is not None and set(old) == set(wanted) and len(unchanged) == len(wanted):
        if not trusted:  # read back: its links and stale entries are checked (an older layout, a crash)
            _link_visible(directory, _tops(wanted))
            _remove_stale(directory)
        return update
    new_dir = _new_payload_dir(directory)
    try:
        for rel, (content, mode) in sorted(wanted.items()):
            linked = str(old_dir / rel) if old_dir is not None and rel in unchanged else None
            _place(str(new_dir), rel, content, mode, linked, gid, update)
        _swap_data(directory, new_dir.name)
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    update.switched = True
    update.removed = sorted(set(old) - set(wanted))
    update.manifest = Manifest(new_dir.name, digests)
    if trusted and old_dir is not None:  # only the names that came and went, and the previous payload
        _link_visible(directory, _tops(wanted) - _tops(old))
        for name in _tops(old) - _tops(wanted):
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(old_dir, ignore_errors=True)
    else:
        _link_visible(directory, _tops(wanted))
        _remove_stale(directory)
    return update


def _tops(files: Mapping[str, object]) -> set[str]:
    """The top-level names of a payload: what the volume's directory shows, each a symlink through ``..data``."""
    return {rel.split("/", 1)[0] for rel in files}


def _current_payload(directory: Path) -> Path | None:
    """The directory ``..data`` points at, or None (a new volume, or one written before this layout)."""
    try:
        target = os.readlink(directory / DATA)
    except OSError:
        return None
    payload = directory / target
    return payload if "/" not in target and target.startswith("..") and payload.is_dir() else None


def _payload_files(payload: Path) -> dict[str, Path]:
    return {str(p.relative_to(payload)): p for p in payload.rglob("*") if p.is_file() and not p.is_symlink()}


def _digest(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=16).digest()


def _old_files(payload: Path | None, known: Manifest | None) -> dict[str, tuple[bytes, int]]:
    """What the current payload holds: as ``known`` (trusted while ``..data`` names it), else read back (after a
    restart, or when ``..data`` changed under us); nothing for a new volume."""
    if payload is None:
        return {}
    if known is not None:
        return known.files
    found = {}
    for rel, path in _payload_files(payload).items():
        try:
            found[rel] = (_digest(path.read_bytes()), path.stat().st_mode & 0o777)
        except OSError:  # gone meanwhile: not unchanged, so written again
            continue
    return found


def _new_payload_dir(directory: Path) -> Path:
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    payload = Path(tempfile.mkdtemp(prefix=stamp, dir=directory))
    os.chmod(payload, PAYLOAD_DIR_MODE)
    return payload


def _place(payload: str, rel: str, content: bytes, mode: int, unchanged: str | None, gid: int | None,
           update: Update) -> None:
    """One file of the new payload: a hard link to the previous payload's ``unchanged`` one, else written.
    (Plain strings, not pathlib: this runs once per file of the volume on every change.)"""
    path = os.path.join(payload, rel)
    if "/" in rel:
        parts = rel.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            sub = os.path.join(payload, *parts[:depth])
            if not os.path.isdir(sub):
                os.mkdir(sub)
                os.chmod(sub, PAYLOAD_DIR_MODE)
    if unchanged is not None:
        try:
            os.link(unchanged, path)
            update.linked.append(rel)
            return
        except OSError as exc:  # a filesystem without hard links: the bytes are written instead
            log.debug("hard link %s: %s; writing it", unchanged, exc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
        if gid is not None:
            os.fchown(out.fileno(), -1, gid)
        os.fchmod(out.fileno(), mode)
    update.written.append(rel)


def _swap_data(directory: Path, payload_name: str) -> None:
    """Point ``..data`` at the new payload with one rename (a symlink made aside first)."""
    tmp = directory / f"{DATA}_tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(payload_name, tmp)
    os.replace(tmp, directory / DATA)


def _link_visible(directory: Path, names: set[str]) -> None:
    """Each top-level name a symlink through ``..data``; a regular file or directory of the layout before
    this one is replaced (the file by one rename; a directory cannot be, so it is removed first)."""
    for name in sorted(names):
        path, want = directory / name, f"{DATA}/{name}"
        if path.is_symlink() and os.readlink(path) == want:
            continue
        tmp = directory / f"..link_tmp.{name}"
        tmp.unlink(missing_ok=True)
        os.symlink(want, tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)


def _remove_stale(directory: Path) -> None:
    """Top-level names no longer in the payload (removed keys, files of the older layout) and every payload
    directory but the current one (the previous one, or one left by a crash before its switch)."""
    current = _current_payload(directory)
    for entry in directory.iterdir():
        if entry.name == DATA or (current is not None and entry.name == current.name):
            continue
        if entry.name.startswith(".."):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        elif entry.is_symlink() and not entry.exists():  # dangling: its name left the payload
            entry.unlink()
        elif not entry.is_symlink():  # the layout before this one: every file was a regular file here
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
