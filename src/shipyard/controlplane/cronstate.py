"""Cron runs in SQLite (table ``cron_runs``): implements the CronRuns protocol of run/cron.py.
One short transaction per method."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from shipyard.clock import Clock
from shipyard.context import Context
from shipyard.controlplane.db import Database
from shipyard.controlplane.state import State
from shipyard.errors import Conflict, NotFound
from shipyard.run.cron import CronRun, CronStatus
from shipyard.run.runtime import ProcessHandle


def cron_run_row(row: dict[str, Any]) -> CronRun:
    return CronRun(
        id=int(row["id"]),
        service=row["service"],
        release=row["release"],
        trigger=row["trigger"],
        status=CronStatus(row["status"]),
        scheduled_at=row["scheduled_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        exit_code=row["exit_code"],
        pid=row["pid"],
        start_time=row["start_time"],
        log_path=row["log_path"],
        reason=row["reason"],
    )


class CronState:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def add_run(
        self, service: str, release: int, trigger: str, scheduled_at: float | None,
        log_root: Path,
    ) -> CronRun:  # fmt: skip
        now = self.clock.now()
        try:
            with self.db.tx() as conn:
                cur = conn.execute(
                    "INSERT INTO cron_runs (service, release, trigger, status, scheduled_at,"
                    " started_at) VALUES (?,?,?,?,?,?)",
                    (service, release, trigger, CronStatus.RUNNING, scheduled_at, now),
                )
                run_id = int(cur.lastrowid or 0)
                conn.execute("UPDATE cron_runs SET log_path=? WHERE id=?",
                             (str(log_root / str(run_id)), run_id))  # fmt: skip
        except sqlite3.IntegrityError as exc:  # the unique index: one running run per job
            current = self.db.one(
                "SELECT id, started_at FROM cron_runs WHERE service=? AND status='running'",
                service,
            )
            which = f" (run #{current['id']})" if current else ""
            raise Conflict(
                f"{service} is running already{which}: one run of a cron job at a time; "
                "wait for it to finish.",
                fields={"service": service, "run": current["id"] if current else None},
            ) from exc
        return self.run(service, run_id)

    def add_skipped(
        self, service: str, release: int | None, trigger: str, scheduled_at: float | None,
        reason: str,
    ) -> CronRun:  # fmt: skip
        now = self.clock.now()
        run_id = self.db.execute(
            "INSERT INTO cron_runs (service, release, trigger, status, scheduled_at, started_at,"
            " finished_at, reason) VALUES (?,?,?,?,?,?,?,?)",
            service, release, trigger, CronStatus.SKIPPED, scheduled_at, now, now, reason,
        )  # fmt: skip
        return self.run(service, run_id)

    def set_handle(self, run_id: int, handle: ProcessHandle) -> None:
        self.db.execute("UPDATE cron_runs SET pid=?, start_time=? WHERE id=?",
                        handle.pid, handle.start_time, run_id)  # fmt: skip

    def finish(
        self, run_id: int, status: CronStatus, exit_code: int | None, reason: str = "",
        finished_at: float | None = None,
    ) -> None:  # fmt: skip
        self.db.execute(
            "UPDATE cron_runs SET status=?, exit_code=?, reason=?, finished_at=?"
            " WHERE id=? AND status='running'",
            status, exit_code, reason, finished_at or self.clock.now(), run_id,
        )  # fmt: skip

    def run(self, service: str, run_id: int) -> CronRun:
        row = self.db.one("SELECT * FROM cron_runs WHERE id=? AND service=?", run_id, service)
        if row is None:
            raise NotFound(f"{service} has no run #{run_id}.",
                           fields={"service": service, "run": run_id})  # fmt: skip
        return cron_run_row(row)

    def runs(self, service: str, limit: int = 50) -> list[CronRun]:
        rows = self.db.all(
            "SELECT * FROM cron_runs WHERE service=? ORDER BY id DESC LIMIT ?", service, limit
        )
        return [cron_run_row(r) for r in rows]

    def running(self) -> list[CronRun]:
        rows = self.db.all("SELECT * FROM cron_runs WHERE status='running' ORDER BY id")
        return [cron_run_row(r) for r in rows]

    def last_run(self, service: str) -> CronRun | None:
        row = self.db.one(
            "SELECT * FROM cron_runs WHERE service=? AND status != 'skipped' ORDER BY id DESC"
            " LIMIT 1",
            service,
        )
        return cron_run_row(row) if row is not None else None

    def prune(self, service: str, keep: int) -> list[str]:
        with self.db.tx() as conn:
            rows = conn.execute(
                "SELECT id, log_path FROM cron_runs WHERE service=? AND status != 'running'"
                " ORDER BY id DESC LIMIT -1 OFFSET ?",
                (service, keep),
            ).fetchall()
            conn.executemany("DELETE FROM cron_runs WHERE id=?", [(r["id"],) for r in rows])
        return [r["log_path"] for r in rows if r["log_path"]]


def cron_state(ctx: Context) -> CronState:
    """The cron runs of ``ctx``'s state database."""
    state = ctx.state
    db = state.db if isinstance(state, State) else Database(ctx.settings.db_path)
    return CronState(db, ctx.clock)
