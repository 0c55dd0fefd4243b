"""REST API (OpenAPI at /openapi.json, docs at /docs) on loopback with bearer-token auth."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from shipyard import __version__
from shipyard.apimodels import (
    DeployAccepted,
    DeployBody,
    ErrorBody,
    EventsPage,
    Health,
    LogLines,
    OperationView,
    PlanView,
    ReleaseView,
    RollbackAccepted,
    RollbackBody,
    ScaleAccepted,
    ScaleBody,
    ServiceView,
    ShutdownAccepted,
    SourceBody,
)
from shipyard.controlplane.engine import Engine
from shipyard.controlplane.views import events_page, operation_view, release_view, service_view
from shipyard.errors import ShipyardError, Unauthorized
from shipyard.observe.logs import follow_logs, read_logs

# Every status code and body the API can answer, per route (the OpenAPI description is a
# contract). 400: malformed request or flag; 401: token; 404: unknown service/release/operation;
# 409: busy or shutting down; 422: invalid Blueprint, failed check; 500: internal error.
_ERR = {"model": ErrorBody}
_COMMON: dict[int | str, dict[str, Any]] = {400: _ERR, 401: _ERR, 500: _ERR}
_SOURCE = {**_COMMON, 404: _ERR, 422: _ERR}
_SERVICE = {**_COMMON, 404: _ERR}
_OPERATION = {**_COMMON, 404: _ERR, 409: _ERR, 422: _ERR}


def create_app(engine: Engine, token: str, shutdown: Callable[[bool], None]) -> FastAPI:
    app = FastAPI(title="Shipyard", version=__version__)
    ctx = engine.ctx
    pid = os.getpid()

    def auth(authorization: Annotated[str | None, Header()] = None) -> None:
        supplied = (authorization or "").removeprefix("Bearer ").strip()
        if not supplied or not hmac.compare_digest(supplied, token):
            raise Unauthorized("Missing or wrong API token (see SHIPYARD_HOME/token).")

    @app.exception_handler(ShipyardError)
    async def shipyard_error(_: Request, exc: ShipyardError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(
            {
                "code": "usage",
                "msg": "Invalid request: " + "; ".join(problems),
                "fields": {"problems": problems},
            },
            status_code=400,
        )

    guarded = [Depends(auth)]

    @app.get("/v1/health", responses={500: _ERR})
    def health() -> Health:
        return Health(status="ok", version=__version__, home=str(ctx.settings.home), pid=pid)

    @app.post("/v1/plan", dependencies=guarded, responses=_SOURCE)
    def plan(body: SourceBody) -> PlanView:
        return engine.plan(body.blueprint, body.repo, body.branch)

    @app.post("/v1/deploys", dependencies=guarded, status_code=202, responses=_OPERATION)
    def deploy(body: DeployBody) -> DeployAccepted:
        return engine.deploy(body.blueprint, body.repo, body.branch, body.services)

    @app.get("/v1/deploys/{deploy_id}", dependencies=guarded, responses=_SERVICE)
    def get_deploy(deploy_id: int) -> OperationView:
        return operation_view(ctx.state.deploy(deploy_id))

    @app.get("/v1/deploys/{deploy_id}/events", dependencies=guarded, responses=_SERVICE)
    def deploy_events(deploy_id: int, after: int = 0) -> EventsPage:
        return events_page(ctx.state.deploy(deploy_id), ctx.state.events(deploy_id, after))

    @app.get("/v1/services", dependencies=guarded, responses=_COMMON)
    def services() -> list[ServiceView]:
        return [service_view(ctx, s, engine.busy(s.name)) for s in ctx.state.services()]

    @app.get("/v1/services/{name}", dependencies=guarded, responses=_SERVICE)
    def service(name: str) -> ServiceView:
        return service_view(ctx, ctx.state.service(name), engine.busy(name))

    @app.get("/v1/services/{name}/releases", dependencies=guarded, responses=_SERVICE)
    def releases(name: str) -> list[ReleaseView]:
        current = ctx.state.service(name).current_release
        return [release_view(r, current) for r in ctx.state.releases(name)]

    @app.post(
        "/v1/services/{name}/rollback", dependencies=guarded, status_code=202,
        responses=_OPERATION,
    )  # fmt: skip
    def rollback(name: str, body: RollbackBody) -> RollbackAccepted:
        return engine.rollback(name, body.to)

    @app.post(
        "/v1/services/{name}/scale", dependencies=guarded, status_code=202, responses=_OPERATION
    )
    def scale(name: str, body: ScaleBody) -> ScaleAccepted:
        return engine.scale(name, body.instances)

    @app.get(
        "/v1/services/{name}/logs",
        dependencies=guarded,
        response_model=LogLines,
        responses={
            **_SERVICE,
            200: {
                "description": "The last lines as JSON, or with follow=true a text stream of"
                " them and then of every new line.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    )
    def logs(
        name: str,
        build: bool = False,
        lines: Annotated[int, Query(ge=1, le=10000)] = 200,
        follow: bool = False,
        release: int | None = None,
    ) -> LogLines | StreamingResponse:
        ctx.state.service(name)
        if follow:
            stream = follow_logs(ctx, name, build=build, lines=lines, release=release)
            return StreamingResponse(stream, media_type="text/plain")
        return LogLines(lines=read_logs(ctx, name, build=build, lines=lines, release=release))

    @app.post("/v1/shutdown", dependencies=guarded, status_code=202, responses=_COMMON)
    def stop(stop_services: bool = True) -> ShutdownAccepted:
        shutdown(stop_services)
        return ShutdownAccepted(status="stopping")

    return app
