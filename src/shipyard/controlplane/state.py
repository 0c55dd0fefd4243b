"""Typed access to the control-plane tables. Every method is one short transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shipyard.clock import Clock
from shipyard.controlplane.db import Database
from shipyard.errors import NotFound

# Release statuses: building -> built -> deploying -> live -> superseded | rolled-back;
# building -> build-failed; built/deploying -> failed.
# The instances that make up a release's presence: routed, or on their way (back) to it.
OF_RELEASE = ("running", "crashed", "restarting", "starting")
# Instance states. Only "running" and "draining" instances appear in the routing table.
ACTIVE_INSTANCE = ("starting", "running", "draining", "crashed", "restarting", "stopping")


@dataclass(frozen=True)
class Instance:
    id: str
    service: str
    release: int
    port: int
    pid: int | None
    start_time: int | None
    state: str
    restarts: int
    last_exit: str
    restart_at: float | None
    crash_times: tuple[float, ...]
    log_path: str
    created_at: float
    started_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instance:
        data = dict(row)
        data["crash_times"] = tuple(json.loads(data["crash_times"]))
        return cls(**data)


class State:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # services ------------------------------------------------------------------------------
    def service(self, name: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM services WHERE name = ?", name)
        if row is None:
            names = [r["name"] for r in self.services()]
            hint = f" Known services: {', '.join(names)}." if names else " No service deployed yet."
            raise NotFound(f"Service {name!r} does not exist.{hint}", fields={"service": name})
        return row

    def find_service(self, name: str) -> dict[str, Any] | None:
        return self.db.one("SELECT * FROM services WHERE name = ?", name)

    def services(self) -> list[dict[str, Any]]:
        return self.db.all("SELECT * FROM services ORDER BY name")

    def register_service(
        self,
        name: str,
        type_: str,
        spec: dict[str, Any],
        blueprint_path: str,
        instances: int,
        internal_port: int | None,
    ) -> None:
        """Create the row of a service seen for the first time; an existing service only records
        which Blueprint it comes from. Its spec changes when a release goes live (promote)."""
        now = self.clock.now()
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE services SET blueprint_path=?, updated_at=? WHERE name=?",
                (blueprint_path, now, name),
            )
            if cur.rowcount == 0:
                conn.execute(
                    "INSERT INTO services VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (name, type_, json.dumps(spec), blueprint_path, instances, instances,
                     internal_port, None, now, now),
                )  # fmt: skip

    def promote(
        self, name: str, number: int, previous_status: str, spec: dict[str, Any],
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
                             " WHERE name=?", (number, json.dumps(spec), now, name))  # fmt: skip
            else:
                conn.execute(
                    "UPDATE services SET current_release=?, spec_json=?, desired_instances=?,"
                    " blueprint_instances=?, updated_at=? WHERE name=?",
                    (number, json.dumps(spec), desired, int(spec.get("num_instances", desired)),
                     now, name),
                )  # fmt: skip

    def unpromote(self, row: dict[str, Any], number: int, reason: str) -> None:
        """In one transaction: undo ``promote`` of ``number`` back to the service ``row`` read
        before it (its spec, counts and live release)."""
        now = self.clock.now()
        with self.db.tx() as conn:
            conn.execute("UPDATE releases SET status='failed', reason=? WHERE service=? AND"
                         " number=?", (reason, row["name"], number))  # fmt: skip
            if row["current_release"] is not None:
                conn.execute("UPDATE releases SET status='live' WHERE service=? AND number=?",
                             (row["name"], row["current_release"]))  # fmt: skip
            conn.execute(
                "UPDATE services SET spec_json=?, desired_instances=?, blueprint_instances=?,"
                " current_release=?, updated_at=? WHERE name=?",
                (row["spec_json"], row["desired_instances"], row["blueprint_instances"],
                 row["current_release"], now, row["name"]),
            )  # fmt: skip

    def set_desired(self, name: str, count: int) -> None:
        self.db.execute(
            "UPDATE services SET desired_instances=?, updated_at=? WHERE name=?",
            count,
            self.clock.now(),
            name,
        )

    def set_current_release(self, name: str, number: int) -> None:
        self.db.execute(
            "UPDATE services SET current_release=?, updated_at=? WHERE name=?",
            number,
            self.clock.now(),
            name,
        )

    def used_ports(self) -> set[int]:
        ports = {
            r["internal_port"]
            for r in self.db.all(
                "SELECT internal_port FROM services WHERE internal_port IS NOT NULL"
            )
        }
        ports |= {
            r["port"]
            for r in self.db.all(
                "SELECT port FROM instances WHERE state NOT IN ('stopped', 'failed')"
            )
        }
        return ports

    # releases ------------------------------------------------------------------------------
    def next_release_number(self, service: str) -> int:
        row = self.db.one("SELECT MAX(number) AS n FROM releases WHERE service = ?", service)
        return int(row["n"] or 0) + 1 if row else 1

    def add_release(self, **values: Any) -> None:
        values.setdefault("created_at", self.clock.now())
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.db.execute(f"INSERT INTO releases ({cols}) VALUES ({marks})", *values.values())

    def release(self, service: str, number: int) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM releases WHERE service=? AND number=?", service, number)
        if row is None:
            raise NotFound(
                f"Service {service!r} has no release {number}.",
                fields={"service": service, "release": number},
            )
        return row

    def releases(self, service: str) -> list[dict[str, Any]]:
        return self.db.all("SELECT * FROM releases WHERE service=? ORDER BY number DESC", service)

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

    def set_release_status(self, service: str, number: int, status: str, reason: str = "") -> None:
        now = self.clock.now()
        live_at = now if status == "live" else None
        self.db.execute(
            "UPDATE releases SET status=?, reason=?, finished_at=COALESCE(finished_at, ?),"
            " live_at=COALESCE(?, live_at) WHERE service=? AND number=?",
            status,
            reason,
            now if status != "building" else None,
            live_at,
            service,
            number,
        )

    # instances -----------------------------------------------------------------------------
    def add_instance(
        self, inst_id: str, service: str, release: int, port: int, log_path: str
    ) -> None:
        self.db.execute(
            "INSERT INTO instances (id, service, release, port, state, log_path, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            inst_id,
            service,
            release,
            port,
            "starting",
            log_path,
            self.clock.now(),
        )

    def instance(self, inst_id: str) -> Instance:
        row = self.db.one("SELECT * FROM instances WHERE id = ?", inst_id)
        if row is None:
            raise NotFound(f"Instance {inst_id!r} does not exist.")
        return Instance.from_row(row)

    def instances(
        self, service: str | None = None, states: tuple[str, ...] = ACTIVE_INSTANCE
    ) -> list[Instance]:
        marks = ",".join("?" for _ in states)
        sql = f"SELECT * FROM instances WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if service is not None:
            sql += " AND service = ?"
            params.append(service)
        return [Instance.from_row(r) for r in self.db.all(sql + " ORDER BY created_at", *params)]

    def transition(self, inst_id: str, from_states: tuple[str, ...], **values: Any) -> bool:
        """Update the instance only if it is still in one of ``from_states`` (compare-and-set),
        so two actors never undo each other. Returns whether it changed."""
        if "crash_times" in values:
            values["crash_times"] = json.dumps(list(values["crash_times"]))
        sets = ", ".join(f"{k}=?" for k in values)
        marks = ",".join("?" for _ in from_states)
        with self.db.tx() as conn:
            cur = conn.execute(
                f"UPDATE instances SET {sets} WHERE id=? AND state IN ({marks})",
                (*values.values(), inst_id, *from_states),
            )
            return cur.rowcount == 1

    def update_instance(self, inst_id: str, **values: Any) -> None:
        if "crash_times" in values:
            values["crash_times"] = json.dumps(list(values["crash_times"]))
        sets = ", ".join(f"{k}=?" for k in values)
        self.db.execute(f"UPDATE instances SET {sets} WHERE id=?", *values.values(), inst_id)

    # deploys -------------------------------------------------------------------------------
    def add_deploy(self, kind: str, target: str) -> int:
        return self.db.execute(
            "INSERT INTO deploys (kind, target, status, created_at) VALUES (?,?,?,?)",
            kind,
            target,
            "running",
            self.clock.now(),
        )

    def finish_deploy(
        self, deploy_id: int, status: str, error: str, result: dict[str, Any], code: str = ""
    ) -> None:
        """``code``: the ShipyardError code of the first failure ("" when it succeeded)."""
        self.db.execute(
            "UPDATE deploys SET status=?, error=?, error_code=?, finished_at=?, result_json=?"
            " WHERE id=?",
            status,
            error,
            code,
            self.clock.now(),
            json.dumps(result),
            deploy_id,
        )

    def deploy(self, deploy_id: int) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM deploys WHERE id=?", deploy_id)
        if row is None:
            raise NotFound(f"Deploy {deploy_id} does not exist.")
        row["result"] = json.loads(row.pop("result_json"))
        return row

    def running_deploys(self) -> list[dict[str, Any]]:
        return self.db.all("SELECT * FROM deploys WHERE status = 'running'")

    def add_event(
        self, deploy_id: int, message: str, service: str = "", level: str = "info"
    ) -> None:
        self.db.execute(
            "INSERT INTO deploy_events (deploy_id, ts, service, level, message) VALUES (?,?,?,?,?)",
            deploy_id,
            self.clock.now(),
            service,
            level,
            message,
        )

    def events(self, deploy_id: int, after: int = 0) -> list[dict[str, Any]]:
        return self.db.all(
            "SELECT * FROM deploy_events WHERE deploy_id=? AND id>? ORDER BY id", deploy_id, after
        )

    # generated values ----------------------------------------------------------------------
    def generated_values(self, service: str) -> dict[str, bytes]:
        rows = self.db.all("SELECT key, value_enc FROM generated_values WHERE service=?", service)
        return {r["key"]: r["value_enc"] for r in rows}

    def save_generated(self, service: str, values: dict[str, bytes]) -> None:
        with self.db.tx() as conn:
            for key, token in values.items():
                conn.execute(
                    "INSERT OR IGNORE INTO generated_values (service, key, value_enc)"
                    " VALUES (?,?,?)",
                    (service, key, token),
                )
