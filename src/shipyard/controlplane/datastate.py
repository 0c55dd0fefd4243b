"""Managed datastores in SQLite: their rows and their (encrypted) secrets. Implements the
DataStore protocol (store.py); one short transaction per method."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from shipyard.blueprint.spec import DatastoreSpec
from shipyard.clock import Clock
from shipyard.controlplane.db import Database
from shipyard.errors import Conflict, NotFound
from shipyard.records import BackupRun, Datastore, DatastoreStatus, Drill, RunStatus

_COLUMNS = frozenset(
    ("status", "reason", "pid", "start_time", "blueprint_path", "restarts", "started_at",
     "version", "origin", "port")
)  # fmt: skip


def datastore_row(row: dict[str, Any]) -> Datastore:
    return Datastore(
        name=row["name"],
        kind=row["kind"],
        spec=DatastoreSpec.from_json(row["spec_json"]),
        version=row["version"],
        port=int(row["port"]),
        dir=row["dir"],
        status=DatastoreStatus(row["status"]),
        reason=row["reason"],
        pid=row["pid"],
        start_time=row["start_time"],
        blueprint_path=row["blueprint_path"],
        origin=row["origin"],
        restarts=int(row["restarts"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
    )


class DataState:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def datastore(self, name: str) -> Datastore:
        found = self.find_datastore(name)
        if found is None:
            names = [d.name for d in self.datastores()]
            known = f" Known: {', '.join(names)}." if names else " There is none yet."
            raise NotFound(
                f"No database or Key Value named {name!r}.{known}", fields={"datastore": name}
            )
        return found

    def find_datastore(self, name: str) -> Datastore | None:
        row = self.db.one("SELECT * FROM datastores WHERE name = ?", name)
        return datastore_row(row) if row is not None else None

    def datastores(self) -> list[Datastore]:
        return [datastore_row(r) for r in self.db.all("SELECT * FROM datastores ORDER BY name")]

    def add_datastore(
        self, spec: DatastoreSpec, version: str, port: int, dir: str, blueprint_path: str,
        origin: str, secrets: dict[str, bytes],
    ) -> Datastore:  # fmt: skip
        now = self.clock.now()
        try:
            with self.db.tx() as conn:
                conn.execute(
                    "INSERT INTO datastores (name, kind, spec_json, version, port, dir, status,"
                    " blueprint_path, origin, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (spec.name, spec.kind, spec.to_json(), version, port, dir,
                     DatastoreStatus.CREATING, blueprint_path, origin, now, now),
                )  # fmt: skip
                conn.executemany(
                    "INSERT OR REPLACE INTO datastore_secrets VALUES (?,?,?)",
                    [(spec.name, key, value) for key, value in secrets.items()],
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                f"Cannot create {spec.name!r}: a database or Key Value of that name, or one on "
                f"port {port}, exists already.",
                fields={"datastore": spec.name, "port": port},
            ) from exc
        return self.datastore(spec.name)

    def update_datastore(self, name: str, **values: Any) -> None:
        unknown = set(values) - _COLUMNS - {"spec"}
        if unknown:
            raise ValueError(f"not datastore columns: {sorted(unknown)}")
        if "spec" in values:
            values["spec_json"] = values.pop("spec").to_json()
        values["updated_at"] = self.clock.now()
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE datastores SET {sets} WHERE name = ?", *values.values(), name)

    def datastore_ports(self) -> set[int]:
        return {int(r["port"]) for r in self.db.all("SELECT port FROM datastores")}

    def datastore_secrets(self, name: str) -> dict[str, bytes]:
        rows = self.db.all("SELECT key, value_enc FROM datastore_secrets WHERE datastore=?", name)
        return {r["key"]: bytes(r["value_enc"]) for r in rows}

    def save_datastore_secret(self, name: str, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO datastore_secrets VALUES (?,?,?)", name, key, value)

    def rename_datastore(self, name: str, new_name: str) -> None:
        if self.find_datastore(new_name) is not None:
            raise Conflict(f"Cannot rename {name!r}: {new_name!r} exists already.",
                           fields={"datastore": name, "name": new_name})  # fmt: skip
        with self.db.tx() as conn:
            conn.execute("UPDATE datastores SET name = ? WHERE name = ?", (new_name, name))
            for table, column in (("datastore_secrets", "datastore"), ("backups", "datastore"),
                                  ("drills", "datastore")):  # fmt: skip
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?",
                             (new_name, name))  # fmt: skip

    def remove_datastore(self, name: str) -> None:
        with self.db.tx() as conn:
            for table in ("datastore_secrets", "backups", "drills"):
                conn.execute(f"DELETE FROM {table} WHERE datastore = ?", (name,))
            conn.execute("DELETE FROM datastores WHERE name = ?", (name,))

    # backups and drills ----------------------------------------------------------------------
    def add_backup_run(
        self, datastore: str, trigger: str, kind: str, deploy_id: int | None
    ) -> BackupRun:
        run_id = self.db.execute(
            "INSERT INTO backups (datastore, trigger, kind, status, started_at, deploy_id)"
            " VALUES (?,?,?,?,?,?)",
            datastore, trigger, kind, RunStatus.RUNNING, self.clock.now(), deploy_id,
        )  # fmt: skip
        return self._backup_run(run_id)

    def finish_backup_run(
        self, run_id: int, status: RunStatus, backup_ids: tuple[str, ...], size_bytes: int | None,
        error: str,
    ) -> None:  # fmt: skip
        self.db.execute(
            "UPDATE backups SET status=?, backup_ids=?, size_bytes=?, error=?, finished_at=?"
            " WHERE id=?",
            status, json.dumps(list(backup_ids)), size_bytes, error, self.clock.now(), run_id,
        )  # fmt: skip

    def _backup_run(self, run_id: int) -> BackupRun:
        row = self.db.one("SELECT * FROM backups WHERE id = ?", run_id)
        assert row is not None
        return _backup_row(row)

    def backup_runs(self, datastore: str, limit: int = 50) -> list[BackupRun]:
        rows = self.db.all(
            "SELECT * FROM backups WHERE datastore = ? ORDER BY id DESC LIMIT ?", datastore, limit
        )
        return [_backup_row(r) for r in rows]

    def add_drill(self, datastore: str, deploy_id: int | None) -> Drill:
        drill_id = self.db.execute(
            "INSERT INTO drills (datastore, status, started_at, deploy_id) VALUES (?,?,?,?)",
            datastore, RunStatus.RUNNING, self.clock.now(), deploy_id,
        )  # fmt: skip
        return self._drill(drill_id)

    def finish_drill(self, drill_id: int, status: RunStatus, **values: Any) -> None:
        allowed = {"backup_id", "target_at", "heartbeat_at", "recovery_point_s", "restore_s",
                   "error"}  # fmt: skip
        if set(values) - allowed:
            raise ValueError(f"not drill columns: {sorted(set(values) - allowed)}")
        values.update(status=status, finished_at=self.clock.now())
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE drills SET {sets} WHERE id = ?", *values.values(), drill_id)

    def _drill(self, drill_id: int) -> Drill:
        row = self.db.one("SELECT * FROM drills WHERE id = ?", drill_id)
        assert row is not None
        return _drill_row(row)

    def drills(self, datastore: str, limit: int = 20) -> list[Drill]:
        rows = self.db.all(
            "SELECT * FROM drills WHERE datastore = ? ORDER BY id DESC LIMIT ?", datastore, limit
        )
        return [_drill_row(r) for r in rows]


def _backup_row(row: dict[str, Any]) -> BackupRun:
    return BackupRun(
        id=int(row["id"]), datastore=row["datastore"], trigger=row["trigger"], kind=row["kind"],
        status=RunStatus(row["status"]), backup_ids=tuple(json.loads(row["backup_ids"])),
        size_bytes=row["size_bytes"], started_at=row["started_at"],
        finished_at=row["finished_at"], error=row["error"], deploy_id=row["deploy_id"],
    )  # fmt: skip


def _drill_row(row: dict[str, Any]) -> Drill:
    return Drill(
        id=int(row["id"]), datastore=row["datastore"], status=RunStatus(row["status"]),
        started_at=row["started_at"], finished_at=row["finished_at"],
        backup_id=row["backup_id"], target_at=row["target_at"],
        heartbeat_at=row["heartbeat_at"], recovery_point_s=row["recovery_point_s"],
        restore_s=row["restore_s"], error=row["error"], deploy_id=row["deploy_id"],
    )  # fmt: skip
