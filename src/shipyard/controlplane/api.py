"""REST API (OpenAPI at /openapi.json, docs at /docs) on loopback with bearer-token auth."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shipyard import __version__
from shipyard.controlplane.engine import Engine
from shipyard.controlplane.logs import follow_logs, read_logs
from shipyard.controlplane.views import release_view, service_view
from shipyard.errors import ShipyardError, Unauthorized


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceBody(Body):
    blueprint: str | None = Field(
        None, description="Blueprint file or directory: an absolute path, or with `repo` a path "
        "inside the repository (default: shipyard.yaml or render.yaml at its root)",
    )  # fmt: skip
    repo: str | None = Field(None, description="git repository URL or path")
    branch: str | None = Field(None, description="branch of `repo` (default: main)")

    @model_validator(mode="after")
    def _source_is_explicit(self) -> SourceBody:
        # The daemon's working directory is nobody's business: say where the source is.
        if self.repo is None and not (self.blueprint and self.blueprint.startswith("/")):
            raise ValueError("give `blueprint` as an absolute path, or `repo`")
        if self.branch is not None and self.repo is None:
            raise ValueError("`branch` needs `repo`")
        return self


class DeployBody(SourceBody):
    services: list[str] | None = None


class RollbackBody(Body):
    to: int | None = Field(None, ge=1)


class ScaleBody(Body):
    instances: int = Field(ge=1, le=100)


def create_app(engine: Engine, token: str, shutdown: Callable[[bool], None]) -> FastAPI:
    app = FastAPI(title="Shipyard", version=__version__)
    ctx = engine.ctx

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

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.post("/v1/plan", dependencies=guarded)
    def plan(body: SourceBody) -> dict[str, Any]:
        return engine.plan(body.blueprint, body.repo, body.branch)

    @app.post("/v1/deploys", dependencies=guarded, status_code=202)
    def deploy(body: DeployBody) -> dict[str, Any]:
        return engine.deploy(body.blueprint, body.repo, body.branch, body.services)

    @app.get("/v1/deploys/{deploy_id}", dependencies=guarded)
    def get_deploy(deploy_id: int) -> dict[str, Any]:
        return ctx.state.deploy(deploy_id)

    @app.get("/v1/deploys/{deploy_id}/events", dependencies=guarded)
    def deploy_events(deploy_id: int, after: int = 0) -> dict[str, Any]:
        deploy = ctx.state.deploy(deploy_id)
        return {"deploy": deploy, "events": ctx.state.events(deploy_id, after)}

    @app.get("/v1/services", dependencies=guarded)
    def services() -> list[dict[str, Any]]:
        return [service_view(ctx, s, engine.busy(s["name"])) for s in ctx.state.services()]

    @app.get("/v1/services/{name}", dependencies=guarded)
    def service(name: str) -> dict[str, Any]:
        return service_view(ctx, ctx.state.service(name), engine.busy(name))

    @app.get("/v1/services/{name}/releases", dependencies=guarded)
    def releases(name: str) -> list[dict[str, Any]]:
        current = ctx.state.service(name)["current_release"]
        return [release_view(r, current) for r in ctx.state.releases(name)]

    @app.post("/v1/services/{name}/rollback", dependencies=guarded, status_code=202)
    def rollback(name: str, body: RollbackBody) -> dict[str, Any]:
        return engine.rollback(name, body.to)

    @app.post("/v1/services/{name}/scale", dependencies=guarded, status_code=202)
    def scale(name: str, body: ScaleBody) -> dict[str, Any]:
        return engine.scale(name, body.instances)

    @app.get("/v1/services/{name}/logs", dependencies=guarded, response_model=None)
    def logs(
        name: str,
        build: bool = False,
        lines: Annotated[int, Query(ge=1, le=10000)] = 200,
        follow: bool = False,
        release: int | None = None,
    ) -> dict[str, Any] | StreamingResponse:
        ctx.state.service(name)
        if follow:
            stream = follow_logs(ctx, name, build=build, lines=lines, release=release)
            return StreamingResponse(stream, media_type="text/plain")
        return {"lines": read_logs(ctx, name, build=build, lines=lines, release=release)}

    @app.post("/v1/shutdown", dependencies=guarded, status_code=202)
    def stop(stop_services: bool = True) -> dict[str, Any]:
        shutdown(stop_services)
        return {"status": "stopping"}

    return app
