"""Restores and restore drills.

A restore always goes into a NEW datastore (``--as NEWNAME``); the original is untouched. The
new one is first-class: listed, supervised, backed up (a full backup right after it starts),
usable by psql and fromDatabase. It gets passwords of its own.

A drill proves the backups: the latest backup plus the archived WAL restored into a throwaway
server on a spare port, recovery waited for, the newest heartbeat row read back. The recovery
point achieved is the drill's target (the end of the archive: the moment recovery reached it
and the server came out of recovery) minus that heartbeat: the data a disaster at that moment
would have lost. pgBackRest's own ``verify`` is no proof (it exits 0
on corruption); the drill is.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

from shipyard.blueprint.refs import datastore_name_problem
from shipyard.context import Context, Emit
from shipyard.data import lifecycle
from shipyard.data.backups import run_backup
from shipyard.data.engines import RestorePoint
from shipyard.errors import Conflict, ShipyardError, UsageError
from shipyard.records import Datastore, DatastoreStatus, Drill, RunStatus

DRILL_TIMEOUT_S = 3600.0


def check_restore(ctx: Context, source: str, point: RestorePoint, new_name: str) -> Datastore:
    """Everything that makes a restore impossible, found before anything is created."""
    src = ctx.data.datastore(source)
    problem = datastore_name_problem(new_name) if new_name else "a name is needed (--as)"
    if problem:
        raise UsageError(f"--as {new_name!r}: {problem}", fields={"name": new_name})
    existing = ctx.data.find_datastore(new_name)
    if existing is not None:
        raise Conflict(
            f"{existing.label} exists already: a restore creates a new datastore; choose "
            "another name for --as",
            fields={"name": new_name},
        )
    if src.spec.primary is not None:
        raise UsageError(f"{src.label} is a read replica: restore its primary "
                         f"'{src.spec.primary}'", fields={"datastore": source})  # fmt: skip
    if point.kind == "time":
        when = float(point.time or 0)
        if when > ctx.clock.now() + 1:
            raise UsageError(
                f"--to-time {_iso(when)} is in the future (now: {_iso(ctx.clock.now())})"
            )
        engine = lifecycle.engine_of(ctx, src.kind)
        since = engine.restorable_since(src, lifecycle.secrets_of(ctx, src))
        if since is None:
            raise UsageError(f"{src.label} has no backup yet: nothing to restore from "
                             f"(`shipyard db backup {source}` takes one)")  # fmt: skip
        if when < since:
            raise UsageError(
                f"--to-time {_iso(when)} is before the earliest point {src.label} can be "
                f"restored to: {_iso(since)} (its oldest backup)",
                fields={"earliest": _iso(since)},
            )
    return src


def restore(
    ctx: Context, source: str, point: RestorePoint, new_name: str, emit: Emit,
    location: str | None = None,
) -> Datastore:  # fmt: skip
    src = check_restore(ctx, source, point, new_name)
    engine = lifecycle.engine_of(ctx, src.kind)
    spec = replace(src.spec, name=new_name, read_replicas=(), primary=None)
    origin = f"restore of {source} ({_describe(point)})"
    secrets = engine.new_secrets(spec)
    source_secrets = lifecycle.secrets_of(ctx, src)
    if "backup_cipher" in source_secrets:
        # Its recovery reads the source's archived WAL (restore_command), with the source's
        # passphrase in its environment; its own repository shares that passphrase.
        secrets["backup_cipher"] = source_secrets["backup_cipher"]
    ds = lifecycle.record(ctx, spec, blueprint_id="", origin=origin, secrets=secrets,
                          version=src.version)  # fmt: skip
    emit(f"{ds.label}: restoring {src.label} ({_describe(point)})", "info")
    started = time.monotonic()
    try:
        engine.restore_files(src, source_secrets, point, ds, location)
        ds = lifecycle.start(ctx, ds, emit)
    except BaseException:
        _discard(ctx, ds)
        raise
    emit(f"{ds.label}: restored in {time.monotonic() - started:.1f} s", "info")
    try:
        run_backup(ctx, new_name, "created", emit, kind="full" if ds.kind == "postgres" else None)
    except ShipyardError as exc:
        emit(f"{ds.label}: its first backup failed: {exc.message}", "warning")
    return ds


def _discard(ctx: Context, ds: Datastore) -> None:
    """A restore that failed half-way leaves nothing behind."""
    current = ctx.data.find_datastore(ds.name)
    if current is not None and lifecycle.running(ctx, current):
        lifecycle.stop(ctx, current)
    ctx.data.remove_datastore(ds.name)
    shutil.rmtree(ds.dir, ignore_errors=True)


def drill(ctx: Context, name: str, emit: Emit, deploy_id: int | None = None) -> Drill:
    src = ctx.data.datastore(name)
    if src.spec.primary is not None:
        raise UsageError(f"{src.label} is a read replica: drill its primary")
    engine = lifecycle.engine_of(ctx, src.kind)
    secrets = lifecycle.secrets_of(ctx, src)
    if not engine.backups(src, secrets):
        raise UsageError(f"{src.label} has no backup yet: a drill restores one "
                         f"(`shipyard db backup {name}` takes one)")  # fmt: skip
    record = ctx.data.add_drill(name, deploy_id)
    with lifecycle.port_lock:
        port = lifecycle.allocate_port(ctx)
    now = ctx.clock.now()
    scratch = Datastore(
        name=f"{name} (drill {record.id})", kind=src.kind, spec=src.spec, version=src.version,
        port=port, dir=str(ctx.settings.data_dir / ".drills" / f"{Path(src.dir).name}-{record.id}"),
        status=DatastoreStatus.CREATING, reason="", pid=None, start_time=None,
        blueprint_path="", origin="drill", restarts=0, created_at=now, updated_at=now,
        started_at=None,
    )  # fmt: skip
    emit(f"{src.label}: drill {record.id}: restoring its latest backup and WAL on port {port}",
         "info")  # fmt: skip
    began, target_at = time.monotonic(), ctx.clock.now()
    handle = None
    try:
        engine.restore_files(src, secrets, RestorePoint("latest"), scratch)
        engine.provision(scratch, secrets, None)
        log = Path(scratch.dir) / "log"
        handle = ctx.runtime.start(engine.process(scratch, secrets, log))
        running = replace(scratch, pid=handle.pid, start_time=handle.start_time)
        engine.wait_ready(running, secrets, DRILL_TIMEOUT_S, lambda: ctx.runtime.alive(handle))
        # The recovery target: "latest" is the end of the archive when recovery reached it,
        # which is when the server came out of recovery, not when the drill began (WAL
        # archived while the backup was being restored is replayed too).
        target_at = ctx.clock.now()
        if src.kind == "keyvalue":
            engine.configure(running, secrets)  # checks the keys loaded against the backup
        found = engine.restored_to(running, secrets)
        restore_s = time.monotonic() - began
        if found is None:
            raise UsageError("the restored data holds no heartbeat: the drill cannot tell what "
                             "it recovered")  # fmt: skip
        rpo = max(0.0, target_at - found)
    except Exception as exc:
        error = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
        ctx.data.finish_drill(record.id, RunStatus.FAILED, error=error,
                              target_at=target_at, restore_s=time.monotonic() - began)  # fmt: skip
        emit(f"{src.label}: drill {record.id} failed: {error}", "error")
        raise
    finally:
        if handle is not None:
            ctx.runtime.stop(handle, engine.stop_grace_s, engine.stop_signal, whole_group=False)
        shutil.rmtree(scratch.dir, ignore_errors=True)
    ctx.data.finish_drill(
        record.id, RunStatus.SUCCEEDED, target_at=target_at, heartbeat_at=found,
        recovery_point_s=rpo, restore_s=restore_s,
    )  # fmt: skip
    emit(f"{src.label}: drill {record.id} passed: recovery point {rpo:.1f} s, restore "
         f"{restore_s:.1f} s", "info")  # fmt: skip
    return ctx.data.drills(name, 1)[0]


def _describe(point: RestorePoint) -> str:
    if point.kind == "time":
        return f"to {_iso(float(point.time or 0))}"
    if point.kind == "backup":
        return f"backup {point.backup_id}"
    return "latest"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
