"""SQLite databases for the edge stores: one writer, WAL, fsync on commit, migrations in code.

MetaManager's store, EdgeHub's outbox and DeviceTwin's store all open their files
here, so all three get the same durability: a commit that returned survives a
crash or a power cut (``synchronous=FULL``), and readers never block the writer
(WAL). Each store lists its migrations; the file's ``user_version`` says how many
have run, so a newer release upgrades an older file in place.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peewee import PeeweeException, SqliteDatabase

from edge.errors import EdgeError
from runtime.component import ComponentSettings

log = logging.getLogger(__name__)

Migration = Callable[[SqliteDatabase], None]


class StoreError(EdgeError, RuntimeError):
    """The database cannot be opened or upgraded; the message names the file and what to do."""


def open_database(path: Path, migrations: Sequence[Migration], *, name: str) -> SqliteDatabase:
    """Open (creating if needed) and migrate ``path``; returns a connected peewee database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(
        str(path),
        pragmas={"journal_mode": "wal", "synchronous": "full", "foreign_keys": 1, "busy_timeout": 5000},
        check_same_thread=False,
    )
    try:
        db.connect(reuse_if_open=True)
        version = db.execute_sql("PRAGMA user_version").fetchone()[0]
    except Exception as exc:
        raise StoreError(f"cannot open the {name} database {path}: {exc}; check the path and free disk space") from exc
    if version > len(migrations):
        raise StoreError(f"{path} is at schema version {version}, newer than this release knows "
                         f"({len(migrations)}): run a newer edgehive or restore a backup")
    for number in range(version, len(migrations)):
        with db.atomic():
            migrations[number](db)
            db.execute_sql(f"PRAGMA user_version = {number + 1}")
        log.info("%s database %s migrated to schema version %d", name, path, number + 1)
    return db


@dataclass(frozen=True)
class StoreSettings(ComponentSettings):
    """Settings of a component that keeps a store on the node's disk."""

    disk_reserve_mb: float = field(default=8.0, metadata={
        "help": "refuse writes while less than this is free where the store lives (the node reports DiskPressure)"})

    @property
    def disk_reserve_bytes(self) -> int:
        return int(self.disk_reserve_mb * 1024 * 1024)


class DiskFull(StoreError):
    """The filesystem of a store has less free space than its reserve; the write was refused."""


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's own "database or disk is full" (SQLITE_FULL), or ENOSPC from the filesystem."""
    return isinstance(exc, DiskFull) or "disk is full" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC


@dataclass
class DiskGuard:
    """Refuses writes while the filesystem holding ``path`` has less than ``reserve_bytes`` free.

    Checking before writing, rather than waiting for SQLite to fail, makes the refusal the
    same for every write: a WAL file that already has room would take some writes and not
    others, and a checkpoint that cannot grow the database leaves the WAL growing. The
    reserve also keeps room for what must go on while the disk is full: checkpoints, the
    deletes that free space, the pods' own files. The answer is cached for half a second,
    so a busy store pays one statvfs per batch at most.
    """

    path: Path
    reserve_bytes: int = 8 * 1024 * 1024
    _free: int = field(default=-1, init=False)
    _checked: float = field(default=0.0, init=False)
    full: bool = field(default=False, init=False)

    def free_bytes(self) -> int:
        now = time.monotonic()
        if self._free < 0 or now - self._checked > 0.5:
            target = self.path if self.path.is_dir() else self.path.parent
            stats = os.statvfs(target)
            self._free, self._checked = stats.f_bavail * stats.f_frsize, now
        return self._free

    def check(self) -> None:
        """Raise DiskFull when below the reserve; log each change between full and not full once."""
        free = self.free_bytes()
        full = free < self.reserve_bytes
        if full != self.full:
            self.full = full
            if full:
                log.error("disk full: %d KiB free where %s lives (reserve %d KiB): refusing writes until space "
                          "is freed there", free // 1024, self.path, self.reserve_bytes // 1024)
            else:
                log.warning("disk space is back where %s lives (%d KiB free): writing again", self.path,
                            free // 1024)
        if full:
            raise DiskFull(f"disk full: {free // 1024} KiB free where {self.path} lives, less than the "
                           f"{self.reserve_bytes // 1024} KiB reserve; free space there")


def integrity_ok(db: SqliteDatabase) -> bool:
    return bool(db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok")


def is_storage_error(exc: BaseException) -> bool:
    """An error of the database or the disk under it (not of the data being written): a batch that meets one
    must fail whole, unacknowledged, so that its sender sends it again; one bad item must not."""
    return isinstance(exc, PeeweeException | sqlite3.Error | OSError | StoreError)
