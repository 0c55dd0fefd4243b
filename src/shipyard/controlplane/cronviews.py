"""API views of cron jobs and their runs, and the cron routes (`shipyard cron ...`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query
from fastapi.params import Depends

from shipyard.apimodels import CronJobView, CronRunView, LogLines
from shipyard.context import Context
from shipyard.controlplane.cronstate import cron_state
from shipyard.errors import Conflict
from shipyard.records import Service
from shipyard.run.cron import (
    CronRun,
    cron_service,
    env_options,
    max_run_s,
    next_due,
    start_run,
)

if TYPE_CHECKING:  # the engine imports the views, which import this module
    from shipyard.controlplane.engine import Engine


def cron_run_view(run: CronRun) -> CronRunView:
    return CronRunView(
        id=run.id,
        service=run.service,
        status=run.status.value,
        trigger="manual" if run.trigger == "manual" else "schedule",
        release=run.release,
        scheduled_at=run.scheduled_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        exit_code=run.exit_code,
        reason=run.reason,
        log=run.log_path,
    )


def cron_job_view(ctx: Context, svc: Service) -> CronJobView:
    runs = cron_state(ctx)
    running = next((r for r in runs.running() if r.service == svc.name), None)
    last = runs.last_run(svc.name)
    schedule = svc.spec.schedule
    deployed = svc.current_release is not None and bool(schedule)
    return CronJobView(
        schedule=schedule,
        max_run_seconds=max_run_s(svc.spec.max_run_seconds, env_options()),
        running=cron_run_view(running) if running else None,
        last_run=cron_run_view(last) if last else None,
        next_run=next_due(schedule, ctx.clock.now()) if deployed else None,
    )


def add_routes(
    app: FastAPI, engine: Engine, guarded: list[Depends], errors: dict[int | str, dict[str, Any]]
) -> None:
    ctx = engine.ctx
    found = {**errors, 404: errors[400]}
    trigger = {**found, 409: errors[400]}

    @app.get("/v1/services/{name}/cron/runs", dependencies=guarded, responses=found)
    def cron_runs(name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[CronRunView]:
        """The job's runs, newest first (skipped due times included)."""
        cron_service(ctx, name)
        return [cron_run_view(r) for r in cron_state(ctx).runs(name, limit)]

    @app.post("/v1/services/{name}/cron/runs", dependencies=guarded, status_code=202,
              responses=trigger)  # fmt: skip
    def cron_trigger(name: str) -> CronRunView:
        """Start a run of the job's live release now (409 while one runs, before the first
        deploy, or while Shipyard shuts down)."""
        if engine.closing:
            raise Conflict("Shipyard is shutting down; start it again with `shipyard up`.")
        return cron_run_view(start_run(ctx, cron_state(ctx), name, "manual"))

    @app.get("/v1/services/{name}/cron/runs/{run_id}", dependencies=guarded, responses=found)
    def cron_run(name: str, run_id: int) -> CronRunView:
        cron_service(ctx, name)
        return cron_run_view(cron_state(ctx).run(name, run_id))

    @app.get("/v1/services/{name}/cron/runs/{run_id}/logs", dependencies=guarded,
             responses=found)  # fmt: skip
    def cron_run_logs(
        name: str, run_id: int, lines: Annotated[int, Query(ge=1, le=10000)] = 200
    ) -> LogLines:
        cron_service(ctx, name)
        run = cron_state(ctx).run(name, run_id)
        if not run.log_path:
            return LogLines(lines=[])
        return LogLines(lines=ctx.runtime.tail(Path(run.log_path), lines))
