"""SQLite databases for the edge stores: one writer, WAL, fsync on commit, migrations in code.

MetaManager's store, EdgeHub's outbox and DeviceTwin's store all open their files
here, so all three get the same durability: a commit that returned survives a
crash or a power cut (``synchronous=FULL``), and readers never block the writer
(WAL). Each store lists its migrations; the file's ``user_version`` says how many
have run, so a newer release upgrades an older file in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from peewee import SqliteDatabase

log = logging.getLogger(__name__)

Migration = Callable[[SqliteDatabase], None]


class StoreError(RuntimeError):
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


def integrity_ok(db: SqliteDatabase) -> bool:
    return bool(db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok")
