"""Backups of datastores: on request, on a schedule (cron, UTC), when one is created, before a
deploy (``backupBeforeDeploy``); each run recorded with how it ended. What a repository holds
is asked of the engine (pgBackRest's info, the Key Value snapshots on disk and in S3)."""

from __future__ import annotations

import datetime as dt
import threading

from croniter import croniter

from shipyard.context import Context, Emit
from shipyard.data import lifecycle
from shipyard.data.engines import BackupEntry
from shipyard.errors import Conflict, ShipyardError, UsageError
from shipyard.records import BackupRun, Datastore, RunStatus

FULL_EVERY_S = 7 * 86400  # a differential backup needs a recent full one under it


def backup_kind(entries: list[BackupEntry], now: float, wanted: str | None = None) -> str:
    """PostgreSQL: ``wanted``, else full when the newest full backup is a week old (or there
    is none), else differential. Pure."""
    if wanted:
        return wanted
    fulls = [e.finished_at for e in entries if e.kind == "full"]
    return "full" if not fulls or now - max(fulls) >= FULL_EVERY_S else "diff"


def due(schedule: str, last: float | None, since: float, now: float) -> bool:
    """The cron ``schedule`` (UTC) fired after ``last`` (or ``since``, when nothing ran yet)
    and at or before ``now``. Pure."""
    start = dt.datetime.fromtimestamp(last if last is not None else since, dt.UTC)
    fire = croniter(schedule, start).get_next(dt.datetime)
    return bool(fire.timestamp() <= now)


def check_backup(ctx: Context, ds: Datastore) -> None:
    if ds.spec.primary is not None:
        raise UsageError(
            f"{ds.label} is a read replica: back up its primary '{ds.spec.primary}'",
            fields={"datastore": ds.name},
        )
    if not lifecycle.running(ctx, ds):
        raise Conflict(f"{ds.label} is not running ({ds.status}); start it before a backup.",
                       fields={"datastore": ds.name})  # fmt: skip


def run_backup(
    ctx: Context, name: str, trigger: str, emit: Emit, kind: str | None = None,
    deploy_id: int | None = None,
) -> BackupRun:  # fmt: skip
    """Take a backup of ``name`` now; the run, succeeded (or ShipyardError after recording
    that it failed)."""
    ds = ctx.data.datastore(name)
    check_backup(ctx, ds)
    engine = lifecycle.engine_of(ctx, ds.kind)
    secrets = lifecycle.secrets_of(ctx, ds)
    if ds.kind == "postgres":
        kind = backup_kind(engine.backups(ds, secrets), ctx.clock.now(), kind)
    else:
        kind = "rdb"
    with _lock_of(name):  # pgBackRest refuses a second backup of a stanza meanwhile
        run = ctx.data.add_backup_run(name, trigger, kind, deploy_id)
        emit(f"{ds.label}: {kind} backup started", "info")
        try:
            taken = engine.backup(ds, secrets, kind)
        except Exception as exc:
            error = (
                exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
            )
            ctx.data.finish_backup_run(run.id, RunStatus.FAILED, (), None, error)
            raise
    size = sum(e.stored_bytes or 0 for e in taken) or None
    ids = tuple(e.id for e in taken)
    ctx.data.finish_backup_run(run.id, RunStatus.SUCCEEDED, ids, size, "")
    where = ", ".join(sorted({loc for e in taken for loc in e.locations}))
    emit(f"{ds.label}: backup {ids[0] if ids else ''} taken ({where})", "info")
    return ctx.data.backup_runs(name, 1)[0]


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_of(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def last_success(ctx: Context, name: str) -> BackupRun | None:
    return next((r for r in ctx.data.backup_runs(name) if r.status == RunStatus.SUCCEEDED), None)
