"""API views of datastores (records + what their servers tell) and the datastore routes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from shipyard.apimodels import (
    BackupPolicyView,
    ClientBody,
    ClientCommand,
    DatastoreInfo,
    DatastoreView,
    LogLines,
)
from shipyard.context import Context
from shipyard.data import lifecycle
from shipyard.data.engines import DatastoreFacts
from shipyard.errors import Conflict
from shipyard.records import Datastore

MASK = "****"


def _facts(ctx: Context, ds: Datastore) -> tuple[bool, DatastoreFacts]:
    running = lifecycle.running(ctx, ds)
    engine = ctx.engines.get(ds.kind)
    if not running or engine is None:
        return running, DatastoreFacts()
    return running, engine.facts(ds, lifecycle.secrets_of(ctx, ds))


def _base(ctx: Context, ds: Datastore, running: bool, facts: DatastoreFacts) -> dict[str, Any]:
    replicas = [d.name for d in ctx.data.datastores() if d.spec.primary == ds.name]
    return {
        "name": ds.name, "kind": ds.kind, "version": ds.version, "status": ds.status.value,
        "reason": ds.reason, "port": ds.port, "host": "127.0.0.1", "running": running,
        "pid": ds.pid if running else None, "primary": ds.spec.primary, "replicas": replicas,
        "size_bytes": facts.size_bytes, "connections": facts.connections,
        "max_connections": facts.max_connections,
        "replication_lag_seconds": facts.replication_lag_s, "restarts": ds.restarts,
        "blueprint": ds.blueprint_path, "origin": ds.origin, "created_at": ds.created_at,
        "started_at": ds.started_at,
    }  # fmt: skip


def datastore_view(ctx: Context, ds: Datastore) -> DatastoreView:
    running, facts = _facts(ctx, ds)
    return DatastoreView(**_base(ctx, ds, running, facts))


def datastore_info(ctx: Context, ds: Datastore) -> DatastoreInfo:
    running, facts = _facts(ctx, ds)
    engine = lifecycle.engine_of(ctx, ds.kind)
    secrets = lifecycle.secrets_of(ctx, ds)
    conn = engine.connection(ds, secrets)
    password = conn.get("password") or secrets.get("password", "")
    masked = conn["connectionString"].replace(password, MASK) if password else ""
    spec = ds.spec
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
    app: FastAPI, ctx: Context, guarded: list[Depends], errors: dict[int | str, dict[str, Any]]
) -> None:
    found = {**errors, 404: errors[400]}

    @app.get("/v1/datastores", dependencies=guarded, responses=errors)
    def datastores() -> list[DatastoreView]:
        return [datastore_view(ctx, d) for d in ctx.data.datastores()]

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
