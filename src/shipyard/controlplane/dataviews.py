"""API views of datastores (records + what their servers tell) and the datastore routes."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from shipyard.apimodels import (
    BackupBody,
    BackupPolicyView,
    BackupRunView,
    BackupsView,
    BackupView,
    ClientBody,
    ClientCommand,
    DataOpAccepted,
    DatastoreInfo,
    DatastoreView,
    DeleteResult,
    DiskRestoreAccepted,
    DiskRestoreBody,
    DiskSnapshotView,
    DrillView,
    LogLines,
    RestoreBody,
)
from shipyard.context import Context, Emit
from shipyard.controlplane.engine import Engine
from shipyard.data import disks, lifecycle
from shipyard.data.backups import check_backup, last_success, run_backup
from shipyard.data.engines import BackupEntry, DatastoreFacts, RestorePoint
from shipyard.data.lifecycle import delete as delete_datastore
from shipyard.data.restore import check_restore, drill, restore
from shipyard.errors import Conflict, NotFound, ShipyardError, UsageError
from shipyard.records import ACTIVE_INSTANCE, BackupRun, Datastore, Drill, OperationKind
from shipyard.run.lifecycle import stop_all
from shipyard.run.scale import scale_to

MASK = "****"


def _facts(ctx: Context, ds: Datastore) -> tuple[bool, DatastoreFacts]:
    running = lifecycle.running(ctx, ds)
    engine = ctx.engines.get(ds.kind)
    if not running or engine is None:
        return running, DatastoreFacts()
    return running, engine.facts(ds, lifecycle.secrets_of(ctx, ds))


def _base(ctx: Context, ds: Datastore, running: bool, facts: DatastoreFacts) -> dict[str, Any]:
    replicas = [d.name for d in ctx.data.datastores() if d.spec.primary == ds.name]
    last = last_success(ctx, ds.name)
    return {
        "name": ds.name, "kind": ds.kind, "version": ds.version, "status": ds.status.value,
        "reason": ds.reason, "port": ds.port, "host": "127.0.0.1", "running": running,
        "pid": ds.pid if running else None, "primary": ds.spec.primary, "replicas": replicas,
        "size_bytes": facts.size_bytes, "connections": facts.connections,
        "max_connections": facts.max_connections,
        "replication_lag_seconds": facts.replication_lag_s, "restarts": ds.restarts,
        "blueprint": ds.blueprint_path, "origin": ds.origin, "created_at": ds.created_at,
        "started_at": ds.started_at,
        "last_backup": last.finished_at if last else None,
    }  # fmt: skip


def datastore_view(ctx: Context, ds: Datastore) -> DatastoreView:
    running, facts = _facts(ctx, ds)
    return DatastoreView(**_base(ctx, ds, running, facts))


def _restorable(ctx: Context, ds: Datastore) -> float | None:
    if ds.spec.primary is not None or not lifecycle.running(ctx, ds):
        return None
    try:
        engine = lifecycle.engine_of(ctx, ds.kind)
        return engine.restorable_since(ds, lifecycle.secrets_of(ctx, ds))
    except ShipyardError:
        return None


def datastore_info(ctx: Context, ds: Datastore) -> DatastoreInfo:
    running, facts = _facts(ctx, ds)
    engine = lifecycle.engine_of(ctx, ds.kind)
    secrets = lifecycle.secrets_of(ctx, ds)
    conn = engine.connection(ds, secrets)
    password = conn.get("password") or secrets.get("password", "")
    masked = conn["connectionString"].replace(password, MASK) if password else ""
    spec = ds.spec
    runs = ctx.data.backup_runs(ds.name, 1)
    drills = ctx.data.drills(ds.name, 1)
    return DatastoreInfo(
        **_base(ctx, ds, running, facts),
        connection_string=masked or conn["connectionString"],
        database=spec.database_name or None,
        user=spec.user or None,
        plan=spec.plan,
        ip_allow_list=[s.cidr for s in spec.ip_allow_list],
        disk_size_gb=spec.disk_size_gb,
        maxmemory_policy=spec.maxmemory_policy,
        backups=BackupPolicyView(**asdict(spec.backups)),
        details=facts.details,
        restorable_since=_restorable(ctx, ds),
        last_backup_status=runs[0].status.value if runs else None,
        last_drill=drill_view(drills[0]) if drills else None,
    )


def drill_view(d: Drill) -> DrillView:
    return DrillView(
        id=d.id, datastore=d.datastore, status=d.status.value, ok=d.ok, started_at=d.started_at,
        finished_at=d.finished_at, backup_id=d.backup_id,
        recovery_point_seconds=d.recovery_point_s, restore_seconds=d.restore_s, error=d.error,
    )  # fmt: skip


def run_view(r: BackupRun) -> BackupRunView:
    return BackupRunView(
        id=r.id, trigger=r.trigger, kind=r.kind, status=r.status.value,
        backup_ids=list(r.backup_ids), size_bytes=r.size_bytes, started_at=r.started_at,
        finished_at=r.finished_at, error=r.error,
    )  # fmt: skip


def backups_view(ctx: Context, ds: Datastore) -> BackupsView:
    engine = lifecycle.engine_of(ctx, ds.kind)
    secrets = lifecycle.secrets_of(ctx, ds)
    entries: list[BackupEntry] = []
    since = None
    if ds.spec.primary is None:
        entries = engine.backups(ds, secrets)
        since = engine.restorable_since(ds, secrets)
    return BackupsView(
        datastore=ds.name,
        backups=[
            BackupView(
                id=e.id,
                kind=e.kind,
                started_at=e.started_at,
                finished_at=e.finished_at,
                size_bytes=e.size_bytes,
                stored_bytes=e.stored_bytes,
                locations=list(e.locations),
            )
            for e in entries
        ],
        runs=[run_view(r) for r in ctx.data.backup_runs(ds.name)],
        restorable_since=since,
    )


def client_command(ctx: Context, name: str, args: list[str]) -> ClientCommand:
    ds = ctx.data.datastore(name)
    if not lifecycle.running(ctx, ds):
        raise Conflict(
            f"{ds.label} is not running ({ds.status}{': ' + ds.reason if ds.reason else ''}).",
            fields={"datastore": name},
        )
    engine = lifecycle.engine_of(ctx, ds.kind)
    argv, env = engine.client_command(ds, lifecycle.secrets_of(ctx, ds), args)
    return ClientCommand(argv=argv, env=env)


def add_routes(
    app: FastAPI, engine: Engine, guarded: list[Depends], errors: dict[int | str, dict[str, Any]]
) -> None:
    ctx = engine.ctx
    found = {**errors, 404: errors[400]}
    operation = {**found, 409: errors[400], 422: errors[400], 507: errors[400]}

    @app.post("/v1/datastores/{name}/backups", dependencies=guarded, status_code=202,
              responses=operation)  # fmt: skip
    def backup(name: str, body: BackupBody) -> DataOpAccepted:
        ds = ctx.data.datastore(name)
        check_backup(ctx, ds)
        op = engine.run_operation(
            OperationKind.BACKUP, f"db:{name}", [lifecycle.work_key(name)], f"db:{name}", name,
            lambda emit: run_backup(ctx, name, "manual", emit, kind=body.kind, deploy_id=None),
        )  # fmt: skip
        return DataOpAccepted(id=op, datastore=name, action="backup")

    @app.get("/v1/services/{name}/disk/snapshots", dependencies=guarded, responses=found)
    def disk_snapshots(name: str) -> list[DiskSnapshotView]:
        ctx.state.service(name)
        return [DiskSnapshotView(**asdict(s)) for s in disks.snapshots(ctx, name)]

    @app.post("/v1/services/{name}/disk/snapshots", dependencies=guarded, status_code=201,
              responses=operation)  # fmt: skip
    def disk_snapshot(name: str) -> DiskSnapshotView:
        engine.claims.claim([f"disk:{name}"], "disk snapshot")
        try:
            return DiskSnapshotView(**asdict(disks.take_snapshot(ctx, name)))
        finally:
            engine.claims.free([f"disk:{name}"], "disk snapshot")

    @app.post("/v1/services/{name}/disk/restore", dependencies=guarded, status_code=202,
              responses=operation)  # fmt: skip
    def disk_restore(name: str, body: DiskRestoreBody) -> DiskRestoreAccepted:
        svc = ctx.state.service(name)
        if not any(s.id == body.snapshot for s in disks.snapshots(ctx, name)):
            ids = ", ".join(s.id for s in disks.snapshots(ctx, name)) or "none"
            raise NotFound(f"{name} has no disk snapshot {body.snapshot!r} (snapshots: {ids}).")

        def action(emit: Emit) -> None:
            emit(f"stopping {name} to restore its disk from snapshot {body.snapshot}", "info")
            stop_all(ctx, ctx.state.instances(name, states=ACTIVE_INSTANCE), grace_s=30.0)
            try:
                disks.restore_snapshot(ctx, name, body.snapshot)
                emit(f"disk restored from {body.snapshot}; starting {name} again", "info")
            finally:  # a failed restore still gets the service running again
                if svc.current_release is not None:
                    scale_to(ctx, name, svc.desired_instances, emit, persist=False)

        op = engine.run_operation(OperationKind.RESTORE, f"disk:{name}", [name, f"disk:{name}"],
                                  name, name, action)  # fmt: skip
        return DiskRestoreAccepted(id=op, service=name, snapshot=body.snapshot)

    @app.get("/v1/datastores/{name}/backups", dependencies=guarded, responses=found)
    def backups(name: str) -> BackupsView:
        return backups_view(ctx, ctx.data.datastore(name))

    @app.post("/v1/datastores/{name}/restore", dependencies=guarded, status_code=202,
              responses=operation)  # fmt: skip
    def restore_(name: str, body: RestoreBody) -> DataOpAccepted:
        point = _point(body)
        check_restore(ctx, name, point, body.new_name)
        claims = [lifecycle.work_key(name), lifecycle.claim_key(body.new_name)]
        op = engine.run_operation(
            OperationKind.RESTORE, f"db:{name}->db:{body.new_name}", claims,
            f"db:{body.new_name}", body.new_name,
            lambda emit: restore(ctx, name, point, body.new_name, emit, body.source),
        )  # fmt: skip
        return DataOpAccepted(id=op, datastore=body.new_name, action="restore")

    @app.post("/v1/datastores/{name}/drills", dependencies=guarded, status_code=202,
              responses=operation)  # fmt: skip
    def drill_(name: str) -> DataOpAccepted:
        ds = ctx.data.datastore(name)
        check_backup(ctx, ds)
        op = engine.run_operation(
            OperationKind.DRILL, f"db:{name}", [lifecycle.work_key(name)], f"db:{name}", name,
            lambda emit: drill(ctx, name, emit),
        )  # fmt: skip
        return DataOpAccepted(id=op, datastore=name, action="drill")

    @app.get("/v1/datastores/{name}/drills", dependencies=guarded, responses=found)
    def drills(name: str) -> list[DrillView]:
        ctx.data.datastore(name)
        return [drill_view(d) for d in ctx.data.drills(name)]

    @app.get("/v1/datastores", dependencies=guarded, responses=errors)
    def datastores() -> list[DatastoreView]:
        return [datastore_view(ctx, d) for d in ctx.data.datastores()]

    @app.delete("/v1/datastores/{name}", dependencies=guarded, responses=operation)
    def delete(name: str, confirm: bool = False) -> DeleteResult:
        if not confirm:
            raise UsageError(f"Deleting '{name}' destroys its data: confirm it (`--yes`, or "
                             "?confirm=true).")  # fmt: skip
        key = lifecycle.claim_key(name)
        engine.claims.claim([key], "delete")
        try:
            ds = delete_datastore(ctx, name)
        finally:
            engine.claims.free([key], "delete")
        until = ds.updated_at + ds.spec.backups.retention_days * 86400
        return DeleteResult(datastore=ds.name, status="deleted", backups_kept_until=until)

    @app.get("/v1/datastores/{name}", dependencies=guarded, responses=found)
    def datastore(name: str) -> DatastoreInfo:
        return datastore_info(ctx, ctx.data.datastore(name))

    @app.get("/v1/datastores/{name}/logs", dependencies=guarded, responses=found)
    def datastore_logs(name: str, lines: Annotated[int, Query(ge=1, le=10000)] = 200) -> LogLines:
        ds = ctx.data.datastore(name)
        return LogLines(lines=ctx.runtime.tail(lifecycle.log_dir(ds), lines))

    @app.post(
        "/v1/datastores/{name}/client", dependencies=guarded,
        responses={**found, 409: errors[400]}, response_model=ClientCommand,
    )  # fmt: skip
    def client(name: str, body: ClientBody) -> JSONResponse:
        command = client_command(ctx, name, body.args)
        return JSONResponse(command.model_dump(), headers={"Cache-Control": "no-store"})


def _point(body: RestoreBody) -> RestorePoint:
    if body.latest:
        return RestorePoint("latest")
    if body.to_backup is not None:
        return RestorePoint("backup", backup_id=body.to_backup)
    text = str(body.to_time).strip()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--to-time {text!r} is not an ISO 8601 time (for example 2026-12-02T10:15:00Z)",
            fields={"to_time": text},
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # a time without a zone is UTC, as on Render
    return RestorePoint("time", time=when.timestamp())
