"""DeviceTwin's store: this node's devices, their models and every property's twin, in SQLite.

Per property: the expected (desired) value with its timestamp and the cloud version
it came with, the actual (reported) value with its timestamp and an edge version
bumped on every change, the type, whether it is optional, and (beyond KubeEdge)
the cloud version the device last confirmed by reporting the desired value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
from peewee import SqliteDatabase

from edge.storage import integrity_ok, open_database
from schemas.devices import Reporting


@dataclass(frozen=True)
class Twin:
    prop: str
    expected: str | None = None
    expected_ts: int = 0
    actual: str | None = None
    actual_ts: int = 0
    kind: str = "string"
    optional: bool = True
    cloud_version: int = 0
    edge_version: int = 0
    acked_version: int = 0
    desired_by_cloud: bool = False
    declared_kind: str = ""
    """The Device's ``desired.metadata.type`` for it ("" when not given): it outranks the DeviceModel's type,
    so a model that arrives or changes later re-types only the twins without one."""

    def but(self, **changes: Any) -> Twin:
        return replace(self, **changes)


@dataclass(frozen=True)
class ReportPolicy:
    """What of a device goes on to the cloud, and how often: the Device's stateReport and each property's
    reportToCloud and reportCycle."""

    state: Reporting = field(default_factory=Reporting)
    properties: Mapping[str, Reporting] = field(default_factory=dict)

    def of(self, prop: str) -> Reporting:
        return self.properties.get(prop) or Reporting()

    def to_json(self) -> str:
        return json.dumps({"state": [self.state.to_cloud, self.state.cycle_ms],
                           "properties": {k: [v.to_cloud, v.cycle_ms] for k, v in self.properties.items()}})

    @classmethod
    def from_json(cls, text: str) -> ReportPolicy:
        found = json.loads(text or "{}")
        state = found.get("state") or [True, 0]
        return cls(Reporting(bool(state[0]), int(state[1])),
                   {k: Reporting(bool(v[0]), int(v[1])) for k, v in (found.get("properties") or {}).items()})


@dataclass(frozen=True)
class Device:
    id: str  # <namespace>/<name>
    namespace: str
    name: str
    description: str = ""
    model: str = ""
    state: str = "unknown"
    last_online: str = ""
    report: ReportPolicy = field(default_factory=ReportPolicy)


def _migration_1(db: SqliteDatabase) -> None:
    db.execute_sql("CREATE TABLE device (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, "
                   "description TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '', "
                   "state TEXT NOT NULL DEFAULT 'unknown', last_online TEXT NOT NULL DEFAULT '')")
    db.execute_sql("CREATE TABLE model (id TEXT PRIMARY KEY, obj BLOB NOT NULL)")
    db.execute_sql("CREATE TABLE twin (device_id TEXT NOT NULL, prop TEXT NOT NULL, expected TEXT, "
                   "expected_ts INTEGER NOT NULL DEFAULT 0, actual TEXT, actual_ts INTEGER NOT NULL DEFAULT 0, "
                   "kind TEXT NOT NULL DEFAULT 'string', optional INTEGER NOT NULL DEFAULT 1, "
                   "cloud_version INTEGER NOT NULL DEFAULT 0, edge_version INTEGER NOT NULL DEFAULT 0, "
                   "acked_version INTEGER NOT NULL DEFAULT 0, desired_by_cloud INTEGER NOT NULL DEFAULT 0, "
                   "PRIMARY KEY (device_id, prop))")


def _migration_2(db: SqliteDatabase) -> None:
    db.execute_sql("ALTER TABLE twin ADD COLUMN declared_kind TEXT NOT NULL DEFAULT ''")
    db.execute_sql("ALTER TABLE device ADD COLUMN report TEXT NOT NULL DEFAULT ''")


MIGRATIONS = [_migration_1, _migration_2]
_DEVICE_COLUMNS = "id, namespace, name, description, model, state, last_online, report"
_TWIN_COLUMNS = ("prop, expected, expected_ts, actual, actual_ts, kind, optional, cloud_version, edge_version, "
                 "acked_version, desired_by_cloud, declared_kind")


def _device(row: tuple[Any, ...]) -> Device:
    return Device(row[0], row[1], row[2], row[3], row[4], row[5], row[6], ReportPolicy.from_json(row[7]))


class TwinStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_database(path, MIGRATIONS, name="DeviceTwin")

    def close(self) -> None:
        self.db.close()

    def integrity_ok(self) -> bool:
        return integrity_ok(self.db)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    # -- devices -----------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        row = self.db.execute_sql(f"SELECT {_DEVICE_COLUMNS} FROM device WHERE id = ?", (device_id,)).fetchone()
        return _device(row) if row else None

    def devices(self) -> list[Device]:
        rows = self.db.execute_sql(f"SELECT {_DEVICE_COLUMNS} FROM device ORDER BY id").fetchall()
        return [_device(r) for r in rows]

    def put_device(self, device: Device) -> None:
        self.db.execute_sql(f"INSERT OR REPLACE INTO device ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (device.id, device.namespace, device.name, device.description, device.model, device.state,
                             device.last_online, device.report.to_json()))

    def set_state(self, device_id: str, state: str, last_online: str) -> None:
        self.db.execute_sql("UPDATE device SET state = ?, last_online = ? WHERE id = ?",
                            (state, last_online, device_id))

    def remove_device(self, device_id: str) -> None:
        self.db.execute_sql("DELETE FROM twin WHERE device_id = ?", (device_id,))
        self.db.execute_sql("DELETE FROM device WHERE id = ?", (device_id,))

    # -- models ----------------------------------------------------------------------------

    def model(self, model_id: str) -> dict[str, Any] | None:
        row = self.db.execute_sql("SELECT obj FROM model WHERE id = ?", (model_id,)).fetchone()
        return msgpack.unpackb(row[0], raw=False) if row else None

    def put_model(self, model_id: str, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self.db.execute_sql("DELETE FROM model WHERE id = ?", (model_id,))
        else:
            self.db.execute_sql("INSERT OR REPLACE INTO model (id, obj) VALUES (?, ?)",
                                (model_id, msgpack.packb(obj, use_bin_type=True)))

    # -- twins -----------------------------------------------------------------------------

    def twins(self, device_id: str) -> dict[str, Twin]:
        rows = self.db.execute_sql(f"SELECT {_TWIN_COLUMNS} FROM twin WHERE device_id = ?", (device_id,)).fetchall()
        return {r[0]: Twin(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], bool(r[10]), r[11])
                for r in rows}

    def put_twin(self, device_id: str, twin: Twin) -> None:
        self.db.execute_sql(
            f"INSERT OR REPLACE INTO twin (device_id, {_TWIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, twin.prop, twin.expected, twin.expected_ts, twin.actual, twin.actual_ts, twin.kind,
             int(twin.optional), twin.cloud_version, twin.edge_version, twin.acked_version,
             int(twin.desired_by_cloud), twin.declared_kind))

    def remove_twin(self, device_id: str, prop: str) -> None:
        self.db.execute_sql("DELETE FROM twin WHERE device_id = ? AND prop = ?", (device_id, prop))
