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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import msgpack
from peewee import SqliteDatabase

from edge.storage import integrity_ok, open_database
from schemas import twin as twin_schema
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
        """A copy with ``changes``: ``dataclasses.replace`` without its per-field bookkeeping (it was a tenth of
        DeviceTwin's time per device update), and without what ``shown`` kept of this one."""
        unknown = changes.keys() - TWIN_FIELDS
        if unknown:
            raise TypeError(f"Twin has no field {', '.join(sorted(unknown))}")
        return self.replaced(changes)

    def replaced(self, changes: Mapping[str, Any]) -> Twin:
        """``but`` for callers whose keys are fields already (DeviceTwin's update, per property of every update)."""
        state = self.__dict__.copy()
        state.pop(_SHOWN, None)
        state.update(changes)
        copy = object.__new__(Twin)
        object.__setattr__(copy, "__dict__", state)  # the copied dict itself, not copied again into the new one's
        return copy

    def holds(self, changes: Mapping[str, Any]) -> bool:
        """Whether every field in ``changes`` has that value already: a copy with them would equal this twin."""
        state = self.__dict__
        for key, value in changes.items():  # noqa: SIM110 - a loop, not all() over a generator: half the time
            if state[key] != value:
                return False
        return True

    def shown(self) -> dict[str, Any]:
        """The property as devices see it (KubeEdge's MsgTwin, without versions). Kept with the twin, which is
        frozen: an update shows each changed twin before and after, and the one before was the last one's after.
        The same dict each time: callers read it, never change it."""
        kept: dict[str, Any] | None = self.__dict__.get(_SHOWN)
        if kept is None:
            kept = self.__dict__[_SHOWN] = twin_schema.entry(self.expected, self.expected_ts, self.actual,
                                                             self.actual_ts, self.kind, self.optional)
        return kept


TWIN_FIELDS = frozenset(f.name for f in fields(Twin))
_SHOWN = "_shown"


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
    """The store, with what DeviceTwin reads on every device request (the device, its twins, its model) kept in
    memory as last written or read. DeviceTwin's process is the store's only user, so the memory holds what the
    file holds, save for a transaction that rolls back: then it is forgotten, and read again from the file.
    (Three SELECTs, a model's decoding and peewee's bookkeeping per request were a third of DeviceTwin's time in
    ``edgehive bench twin``.)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_database(path, MIGRATIONS, name="DeviceTwin")
        self._devices: dict[str, Device | None] = {}
        self._twins: dict[str, dict[str, Twin]] = {}
        self._models: dict[str, dict[str, Any] | None] = {}
        self._depth = 0
        self._unwritten: dict[str, dict[str, Twin]] = {}
        """Twins put inside the innermost open transaction, by device and property, written when it ends: a
        device updated several times in one batch of requests is written once, in one statement for all."""

    def close(self) -> None:
        self.db.close()

    def integrity_ok(self) -> bool:
        return integrity_ok(self.db)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction, or a savepoint inside one; rolled back by an exception, which also drops what is
        kept in memory (it may hold what the rollback undid)."""
        self._write_unwritten()  # an outer level's twins, before a savepoint that rolls back could take them along
        self._depth += 1
        try:
            with self.db.atomic():
                yield
                self._write_unwritten()
        except BaseException:
            self._unwritten.clear()
            self.forget()
            raise
        finally:
            self._depth -= 1

    def forget(self) -> None:
        """Read everything from the file again from now on."""
        self._devices.clear()
        self._twins.clear()
        self._models.clear()

    # -- devices -----------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        if device_id in self._devices:
            return self._devices[device_id]
        row = self.db.execute_sql(f"SELECT {_DEVICE_COLUMNS} FROM device WHERE id = ?", (device_id,)).fetchone()
        found = self._devices[device_id] = _device(row) if row else None
        return found

    def devices(self) -> list[Device]:
        rows = self.db.execute_sql(f"SELECT {_DEVICE_COLUMNS} FROM device ORDER BY id").fetchall()
        return [_device(r) for r in rows]

    def put_device(self, device: Device) -> None:
        self.db.execute_sql(f"INSERT OR REPLACE INTO device ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (device.id, device.namespace, device.name, device.description, device.model, device.state,
                             device.last_online, device.report.to_json()))
        self._devices[device.id] = device

    def set_state(self, device_id: str, state: str, last_online: str) -> None:
        self.db.execute_sql("UPDATE device SET state = ?, last_online = ? WHERE id = ?",
                            (state, last_online, device_id))
        self._devices.pop(device_id, None)

    def remove_device(self, device_id: str) -> None:
        self._write_unwritten()
        self.db.execute_sql("DELETE FROM twin WHERE device_id = ?", (device_id,))
        self.db.execute_sql("DELETE FROM device WHERE id = ?", (device_id,))
        self._devices[device_id] = None
        self._twins[device_id] = {}

    # -- models ----------------------------------------------------------------------------

    def model(self, model_id: str) -> dict[str, Any] | None:
        """The DeviceModel as stored; the same object until it is written again (not to be changed in place)."""
        if model_id in self._models:
            return self._models[model_id]
        row = self.db.execute_sql("SELECT obj FROM model WHERE id = ?", (model_id,)).fetchone()
        found = self._models[model_id] = msgpack.unpackb(row[0], raw=False) if row else None
        return found

    def put_model(self, model_id: str, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self.db.execute_sql("DELETE FROM model WHERE id = ?", (model_id,))
        else:
            self.db.execute_sql("INSERT OR REPLACE INTO model (id, obj) VALUES (?, ?)",
                                (model_id, msgpack.packb(obj, use_bin_type=True)))
        self._models.pop(model_id, None)  # read back as stored: the caller's object may change after

    # -- twins -----------------------------------------------------------------------------

    def twins(self, device_id: str) -> dict[str, Twin]:
        """The device's twins by property: a dict of the caller's own (the twins themselves are frozen)."""
        kept = self._twins.get(device_id)
        if kept is None:
            self._write_unwritten()
            rows = self.db.execute_sql(f"SELECT {_TWIN_COLUMNS} FROM twin WHERE device_id = ?",
                                       (device_id,)).fetchall()
            kept = self._twins[device_id] = {
                r[0]: Twin(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], bool(r[10]), r[11])
                for r in rows}
        return dict(kept)

    def put_twin(self, device_id: str, twin: Twin) -> None:
        self.put_twins(device_id, [twin])

    def put_twins(self, device_id: str, twins: list[Twin]) -> None:
        """Write these twins of one device: at once outside a transaction, else when the innermost one ends
        (read back from memory meanwhile)."""
        if not twins:
            return
        unwritten = self._unwritten.get(device_id)
        if unwritten is None:
            unwritten = self._unwritten[device_id] = {}
        kept = self._twins.get(device_id)
        for t in twins:  # a loop, not dict.update over a generator: this runs for every device update
            unwritten[t.prop] = t
            if kept is not None:
                kept[t.prop] = t
        if not self._depth:
            self._write_unwritten()

    def _write_unwritten(self) -> None:
        """The twins put since the last write, in one statement; before any other statement on the twin table,
        so that the file sees every change in the order it was made."""
        if not self._unwritten:
            return
        rows = [(device_id, t.prop, t.expected, t.expected_ts, t.actual, t.actual_ts, t.kind, int(t.optional),
                 t.cloud_version, t.edge_version, t.acked_version, int(t.desired_by_cloud), t.declared_kind)
                for device_id, twins in self._unwritten.items() for t in twins.values()]
        self._unwritten.clear()
        self.db.cursor().executemany(
            f"INSERT OR REPLACE INTO twin (device_id, {_TWIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)

    def remove_twin(self, device_id: str, prop: str) -> None:
        self._write_unwritten()
        self.db.execute_sql("DELETE FROM twin WHERE device_id = ? AND prop = ?", (device_id, prop))
        kept = self._twins.get(device_id)
        if kept is not None:
            kept.pop(prop, None)
