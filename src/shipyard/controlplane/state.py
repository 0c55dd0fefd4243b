"""The state store: typed records in SQLite. Every method is one short transaction.

Implements the store the stages depend on (``rollout``, ``run``, ``route`` read and change
services, releases and instances only through these methods). Records are snapshots: an actor
about to act on a field another actor may change re-reads it, and instance state changes that
race are compare-and-set (:meth:`State.transition`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from shipyard.blueprint.spec import ServiceSpec
from shipyard.clock import Clock
from shipyard.controlplane.db import Database
from shipyard.controlplane.rows import instance_row, operation_row, release_row, service_row
from shipyard.errors import NotFound
from shipyard.records import (
    ACTIVE_INSTANCE,
    Event,
    Instance,
    InstanceState,
    Operation,
    OperationKind,
    OperationStatus,
    Release,
    ReleaseStatus,
    Service,
    ServiceOutcome,
)

__all__ = ["State"]


def _marks(values: Iterable[object]) -> str:
    return ",".join("?" for _ in values)


class State:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def version(self) -> int:
        """Changes whenever another thread (or process) committed a change to the state; the
        calling thread's own writes do not change it (it knows what it wrote)."""
        return self.db.data_version()

    # services ------------------------------------------------------------------------------
    def service(self, name: str) -> Service:
        found = self.find_service(name)
        if found is None:
            names = [s.name for s in self.services()]
            hint = f" Known services: {', '.join(names)}." if names else " No service deployed yet."
            raise NotFound(f"Service {name!r} does not exist.{hint}", fields={"service": name})
        return found

    def find_service(self, name: str) -> Service | None:
        row = self.db.one("SELECT * FROM services WHERE name = ?", name)
        return service_row(row) if row is not None else None

    def services(self) -> list[Service]:
        return [service_row(r) for r in self.db.all("SELECT * FROM services ORDER BY name")]

    def register_service(
        self,
        name: str,
        type_: str,
        spec: ServiceSpec,
        blueprint_path: str,
        instances: int,
        internal_port: int | None,
    ) -> None:
        """Create the row of a service seen for the first time; an existing service only records
        which Blueprint it comes from. Its spec changes when a release goes live (promote)."""
        now = self.clock.now()
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE services SET blueprint_path=?, environment=?, base_name=?, updated_at=?"
                " WHERE name=?",
                (blueprint_path, spec.environment, spec.base_name, now, name),
            )
            if cur.rowcount == 0:
                conn.execute(
                    "INSERT INTO services (name, type, spec_json, blueprint_path,"
                    " desired_instances, blueprint_instances, internal_port, current_release,"
                    " created_at, updated_at, environment, base_name)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (name, type_, spec.to_json(), blueprint_path, instances, instances,
                     internal_port, None, now, now, spec.environment, spec.base_name),
                )  # fmt: skip

    def promote(
        self, name: str, number: int, previous_status: ReleaseStatus, spec: ServiceSpec,
        desired: int | None,
    ) -> None:  # fmt: skip
        """In one transaction: ``number`` becomes live and current, the release it replaces
        gets ``previous_status``, and the service takes the new spec (and, from a Blueprint,
        its instance count). A kill can never leave half of this."""
        now = self.clock.now()
        with self.db.tx() as conn:
            row = conn.execute("SELECT current_release FROM services WHERE name=?", (name,))
            current = row.fetchone()["current_release"]
            if current is not None and current != number:
                conn.execute("UPDATE releases SET status=?, finished_at=COALESCE(finished_at, ?)"
                             " WHERE service=? AND number=?",
                             (previous_status, now, name, current))  # fmt: skip
            conn.execute("UPDATE releases SET status='live', reason='', live_at=?,"
                         " finished_at=COALESCE(finished_at, ?) WHERE service=? AND number=?",
                         (now, now, name, number))  # fmt: skip
            if desired is None:
                conn.execute("UPDATE services SET current_release=?, spec_json=?, updated_at=?"
                             " WHERE name=?", (number, spec.to_json(), now, name))  # fmt: skip
            else:
                conn.execute(
                    "UPDATE services SET current_release=?, spec_json=?, desired_instances=?,"
                    " blueprint_instances=?, updated_at=? WHERE name=?",
                    (number, spec.to_json(), desired, spec.num_instances, now, name),
                )

    def unpromote(self, before: Service, number: int, reason: str) -> None:
        """In one transaction: undo ``promote`` of ``number`` back to the service as it was
        read before (its spec, counts and live release)."""
        now = self.clock.now()
        with self.db.tx() as conn:
            conn.execute("UPDATE releases SET status='failed', reason=? WHERE service=? AND"
                         " number=?", (reason, before.name, number))  # fmt: skip
            if before.current_release is not None:
                conn.execute("UPDATE releases SET status='live' WHERE service=? AND number=?",
                             (before.name, before.current_release))  # fmt: skip
            conn.execute(
                "UPDATE services SET spec_json=?, desired_instances=?, blueprint_instances=?,"
                " current_release=?, updated_at=? WHERE name=?",
                (before.spec.to_json(), before.desired_instances, before.blueprint_instances,
                 before.current_release, now, before.name),
            )  # fmt: skip

    def set_desired(self, name: str, count: int) -> None:
        self.db.execute(
            "UPDATE services SET desired_instances=?, updated_at=? WHERE name=?",
            count, self.clock.now(), name,
        )  # fmt: skip

    def used_ports(self) -> set[int]:
        ports = {
            int(r["internal_port"])
            for r in self.db.all(
                "SELECT internal_port FROM services WHERE internal_port IS NOT NULL"
            )
        }
        ports |= {
            int(r["port"])
            for r in self.db.all(
                "SELECT port FROM instances WHERE state NOT IN ('stopped', 'failed')"
            )
        }
        return ports

    # releases ------------------------------------------------------------------------------
    def next_release_number(self, service: str) -> int:
        row = self.db.one("SELECT MAX(number) AS n FROM releases WHERE service = ?", service)
        return int(row["n"] or 0) + 1 if row else 1

    def add_release(
        self,
        *,
        service: str,
        number: int,
        config_digest: str,
        git_commit: str,
        git_branch: str,
        source: str,
        dir: str,
        spec: ServiceSpec,
        env_enc: bytes,
        deploy_id: int | None,
    ) -> Release:
        """Record release ``number`` as building; returns it."""
        self.db.execute(
            "INSERT INTO releases (service, number, status, created_at, config_digest,"
            " git_commit, git_branch, source, dir, spec_json, env_enc, deploy_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            service, number, ReleaseStatus.BUILDING, self.clock.now(), config_digest,
            git_commit, git_branch, source, dir, spec.to_json(), env_enc, deploy_id,
        )  # fmt: skip
        return self.release(service, number)

    def release(self, service: str, number: int) -> Release:
        row = self.db.one("SELECT * FROM releases WHERE service=? AND number=?", service, number)
        if row is None:
            raise NotFound(
                f"Service {service!r} has no release {number}.",
                fields={"service": service, "release": number},
            )
        return release_row(row)

    def releases(self, service: str) -> list[Release]:
        rows = self.db.all("SELECT * FROM releases WHERE service=? ORDER BY number DESC", service)
        return [release_row(r) for r in rows]

    def mark_deployable(self, service: str, number: int) -> None:
        """Built and past its pre-deploy command: a release rollback may roll out again."""
        self.db.execute(
            "UPDATE releases SET deployable=1 WHERE service=? AND number=?", service, number
        )

    def mark_pruned(self, service: str, number: int) -> None:
        self.db.execute(
            "UPDATE releases SET pruned=1, deployable=0 WHERE service=? AND number=?",
            service, number,
        )  # fmt: skip

    def set_release_status(
        self, service: str, number: int, status: ReleaseStatus, reason: str = ""
    ) -> None:
        now = self.clock.now()
        live_at = now if status == ReleaseStatus.LIVE else None
        self.db.execute(
            "UPDATE releases SET status=?, reason=?, finished_at=COALESCE(finished_at, ?),"
            " live_at=COALESCE(?, live_at) WHERE service=? AND number=?",
            status, reason, now if status != ReleaseStatus.BUILDING else None, live_at,
            service, number,
        )  # fmt: skip

    # instances -----------------------------------------------------------------------------
    def add_instance(
        self, inst_id: str, service: str, release: int, port: int, log_path: str
    ) -> None:
        self.db.execute(
            "INSERT INTO instances (id, service, release, port, assigned_port, state, log_path,"
            " created_at) VALUES (?,?,?,?,?,?,?,?)",
            inst_id, service, release, port, port, InstanceState.STARTING, log_path,
            self.clock.now(),
        )  # fmt: skip

    def instance(self, inst_id: str) -> Instance:
        row = self.db.one("SELECT * FROM instances WHERE id = ?", inst_id)
        if row is None:
            raise NotFound(f"Instance {inst_id!r} does not exist.")
        return instance_row(row)

    def instances(
        self, service: str | None = None, states: tuple[InstanceState, ...] = ACTIVE_INSTANCE
    ) -> list[Instance]:
        sql = f"SELECT * FROM instances WHERE state IN ({_marks(states)})"
        params: list[Any] = list(states)
        if service is not None:
            sql += " AND service = ?"
            params.append(service)
        return [instance_row(r) for r in self.db.all(sql + " ORDER BY created_at", *params)]

    def transition(
        self, inst_id: str, from_states: tuple[InstanceState, ...], **values: Any
    ) -> bool:
        """Update the instance only if it is still in one of ``from_states`` (compare-and-set),
        so two actors never undo each other. Returns whether it changed."""
        values = _instance_columns(values)
        sets = ", ".join(f"{k}=?" for k in values)
        with self.db.tx() as conn:
            cur = conn.execute(
                f"UPDATE instances SET {sets} WHERE id=? AND state IN ({_marks(from_states)})",
                (*values.values(), inst_id, *from_states),
            )
            return cur.rowcount == 1

    def update_instance(self, inst_id: str, **values: Any) -> None:
        values = _instance_columns(values)
        sets = ", ".join(f"{k}=?" for k in values)
        self.db.execute(f"UPDATE instances SET {sets} WHERE id=?", *values.values(), inst_id)

    # operations ----------------------------------------------------------------------------
    def add_deploy(self, kind: OperationKind, target: str) -> int:
        return self.db.execute(
            "INSERT INTO deploys (kind, target, status, created_at) VALUES (?,?,?,?)",
            kind, target, OperationStatus.RUNNING, self.clock.now(),
        )  # fmt: skip

    def finish_deploy(
        self,
        deploy_id: int,
        status: OperationStatus,
        error: str,
        result: dict[str, ServiceOutcome],
        code: str = "",
    ) -> None:
        """``code``: the ShipyardError code of the first failure ("" when it succeeded)."""
        self.db.execute(
            "UPDATE deploys SET status=?, error=?, error_code=?, finished_at=?, result_json=?"
            " WHERE id=?",
            status, error, code, self.clock.now(),
            json.dumps({name: vars(outcome) for name, outcome in result.items()}), deploy_id,
        )  # fmt: skip

    def deploy(self, deploy_id: int) -> Operation:
        row = self.db.one("SELECT * FROM deploys WHERE id=?", deploy_id)
        if row is None:
            raise NotFound(f"Deploy {deploy_id} does not exist.")
        return operation_row(row)

    def running_deploys(self) -> list[Operation]:
        rows = self.db.all("SELECT * FROM deploys WHERE status = ?", OperationStatus.RUNNING)
        return [operation_row(r) for r in rows]

    def add_event(
        self, deploy_id: int, message: str, service: str = "", level: str = "info"
    ) -> None:
        self.db.execute(
            "INSERT INTO deploy_events (deploy_id, ts, service, level, message) VALUES (?,?,?,?,?)",
            deploy_id, self.clock.now(), service, level, message,
        )  # fmt: skip

    def events(self, deploy_id: int, after: int = 0) -> list[Event]:
        rows = self.db.all(
            "SELECT * FROM deploy_events WHERE deploy_id=? AND id>? ORDER BY id", deploy_id, after
        )
        return [Event(**r) for r in rows]

    # generated values ----------------------------------------------------------------------
    def generated_values(self, service: str) -> dict[str, bytes]:
        rows = self.db.all("SELECT key, value_enc FROM generated_values WHERE service=?", service)
        return {r["key"]: r["value_enc"] for r in rows}

    def replace_generated(self, service: str, key: str, token: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO generated_values (service, key, value_enc)"
                        " VALUES (?,?,?)", service, key, token)  # fmt: skip

    def save_generated(self, service: str, values: dict[str, bytes]) -> None:
        with self.db.tx() as conn:
            for key, token in values.items():
                conn.execute(
                    "INSERT OR IGNORE INTO generated_values (service, key, value_enc)"
                    " VALUES (?,?,?)",
                    (service, key, token),
                )

    # key rotation --------------------------------------------------------------------------
    ENCRYPTED = (
        ("releases", "env_enc", ("service", "number")),
        ("generated_values", "value_enc", ("service", "key")),
        ("env_values", "value_enc", ("scope", "key")),
        ("datastore_secrets", "value_enc", ("datastore", "key")),
        ("repos", "token_enc", ("name",)),
        ("service_hooks", "token_enc", ("service",)),
        ("service_hooks", "secret_enc", ("service",)),
    )

    def reencrypt(self, again: Callable[[bytes], bytes]) -> int:
        """Every encrypted value of the state through ``again``, in one transaction."""
        count = 0
        with self.db.tx() as conn:
            for table, column, ids in self.ENCRYPTED:
                where = " AND ".join(f"{c} = ?" for c in ids)
                rows = conn.execute(f"SELECT {', '.join(ids)}, {column} FROM {table}").fetchall()
                for row in rows:
                    token = again(bytes(row[column]))
                    conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}",
                                 (token, *(row[c] for c in ids)))  # fmt: skip
                    count += 1
        return count

    # operator-set env values (`shipyard env set`) ----------------------------------------
    def env_values(self, scope: str) -> dict[str, bytes]:
        rows = self.db.all("SELECT key, value_enc FROM env_values WHERE scope=? ORDER BY key",
                           scope)  # fmt: skip
        return {r["key"]: bytes(r["value_enc"]) for r in rows}

    def set_env_values(self, scope: str, values: dict[str, bytes], unset: list[str]) -> None:
        """One transaction: ``values`` set (replacing), ``unset`` keys removed."""
        now = self.clock.now()
        with self.db.tx() as conn:
            for key, token in values.items():
                conn.execute("INSERT OR REPLACE INTO env_values VALUES (?,?,?,?)",
                             (scope, key, token, now))  # fmt: skip
            for key in unset:
                conn.execute("DELETE FROM env_values WHERE scope=? AND key=?", (scope, key))


_INSTANCE_COLUMNS = frozenset(
    ("port", "pid", "start_time", "state", "restarts", "last_exit", "restart_at", "crash_times",
     "started_at", "log_path")
)  # fmt: skip


def _instance_columns(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - _INSTANCE_COLUMNS
    if unknown:
        raise ValueError(f"not an instance column: {', '.join(sorted(unknown))}")
    if "crash_times" in values:
        values = {**values, "crash_times": json.dumps(list(values["crash_times"]))}
    return values
