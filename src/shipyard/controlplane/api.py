"""REST API (OpenAPI at /openapi.json, docs at /docs) on loopback with bearer-token auth."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard import __version__
from shipyard.apimodels import (
    DeployAccepted,
    DeployBody,
    DiskView,
    EnvBody,
    EnvChanged,
    EnvEntryView,
    EnvView,
    ErrorBody,
    EventsPage,
    Health,
    KeyRotated,
    LogLines,
    OperationView,
    PlanBody,
    PlanView,
    ReleaseView,
    RollbackAccepted,
    RollbackBody,
    ScaleAccepted,
    ScaleBody,
    ServiceView,
    ShutdownAccepted,
)
from shipyard.blueprint.scalars import ENV_KEY
from shipyard.context import Context
from shipyard.controlplane import envops
from shipyard.controlplane.cronviews import add_routes as add_cron_routes
from shipyard.controlplane.dataviews import add_routes as add_datastore_routes
from shipyard.controlplane.engine import Engine
from shipyard.controlplane.promoteviews import add_routes as add_promote_routes
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.triggerops import Triggers
from shipyard.controlplane.triggerstate import TriggerState
from shipyard.controlplane.triggerviews import add_routes as add_trigger_routes
from shipyard.controlplane.views import events_page, operation_view, release_view, service_view
from shipyard.errors import Conflict, LimitExceeded, ShipyardError, Unauthorized, UsageError
from shipyard.observe.logs import follow_logs, read_logs
from shipyard.release.env import blueprint_keys

# Every status code and body the API can answer, per route (the OpenAPI description is a
# contract). 400: malformed request or flag; 401: token; 404: unknown service/release/operation;
# 409: busy or shutting down; 413: request body or Blueprint over a limit; 422: invalid
# Blueprint, failed check; 500: internal error (with a request id); 507: not enough disk space.
log = logging.getLogger("shipyard.api")
_ERR = {"model": ErrorBody}
_COMMON: dict[int | str, dict[str, Any]] = {400: _ERR, 401: _ERR, 413: _ERR, 500: _ERR}
_SOURCE = {**_COMMON, 404: _ERR, 422: _ERR}
_SERVICE = {**_COMMON, 404: _ERR}
_OPERATION = {**_COMMON, 404: _ERR, 409: _ERR, 422: _ERR, 507: _ERR}


class BodyLimit:
    """Refuses (413) a request whose body is over ``max_bytes``, before anything reads it:
    by its Content-Length, or while a chunked body arrives (read into memory up to the limit,
    then handed on)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = LimitExceeded(
            f"The request body is over the API's limit of {self.max_bytes} bytes (raise it with "
            "SHIPYARD_API_MAX_BODY_BYTES).",
            fields={"limit": self.max_bytes, "setting": "SHIPYARD_API_MAX_BODY_BYTES"},
        )
        response = JSONResponse(error.to_dict(), status_code=error.http_status,
                                headers={"Connection": "close"})  # fmt: skip
        await response(scope, receive, send)


class RequestId:
    """Gives each request an id (``scope["state"]["request_id"]``, the X-Request-ID response
    header): what a 500 answer and the daemon's log line of its traceback share. Plain ASGI, so
    streamed responses (logs -f) pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _replay(messages: list[Message], then: Receive) -> Receive:
    """``messages`` first, then the connection's own (a streamed response waits on it to learn
    that the client went away)."""

    async def receive() -> Message:
        return messages.pop(0) if messages else await then()

    return receive


def _check_env(body: EnvBody) -> None:
    bad = [k for k in [*body.set, *body.unset] if not ENV_KEY.fullmatch(k)]
    if bad:
        raise UsageError(f"invalid env var key(s): {', '.join(repr(k) for k in bad)} (letters, "
                         "digits, '_', '.', '-', not starting with a digit)")  # fmt: skip
    nul = [k for k, v in body.set.items() if "\x00" in v]
    if nul:
        raise UsageError(f"the value of {', '.join(nul)} holds a NUL character, which no "
                         "process environment can carry")  # fmt: skip
    if not body.set and not body.unset:
        raise UsageError("nothing to change: give KEY=VALUE pairs to set or keys to unset")


def env_view(ctx: Context, name: str, reveal: bool) -> EnvView:
    """The live release's env (with what `env set` added), values masked unless ``reveal``."""
    svc = ctx.state.find_service(name)
    own = {k: ctx.box.decrypt(v) for k, v in ctx.state.env_values(name).items()}
    live: dict[str, str] = {}
    fixed: set[str] = set()
    if svc is not None and svc.current_release is not None:
        live = ctx.box.decrypt_env(ctx.state.release(name, svc.current_release).env_enc)
        fixed = blueprint_keys(svc.spec)
    elif svc is None and not own:
        ctx.state.service(name)  # NotFound naming the services
    entries = []
    for key in sorted(set(live) | set(own)):
        value = own.get(key, live.get(key, ""))
        source = "set" if key in own and key not in fixed else "blueprint"
        entries.append(EnvEntryView(key=key, source=source, value=value if reveal else "****"))
    return EnvView(service=name, entries=entries)


def create_app(
    engine: Engine, token: str, shutdown: Callable[[bool], None],
    triggers: Triggers | None = None,
) -> FastAPI:  # fmt: skip
    app = FastAPI(title="Shipyard", version=__version__)
    ctx = engine.ctx
    if triggers is None:  # tests that build the app alone
        db = getattr(ctx.state, "db", None)
        triggers = Triggers(engine, TriggerState(db, ctx.box, ctx.clock)) if db else None
    pid = os.getpid()

    def auth(authorization: Annotated[str | None, Header()] = None) -> None:
        supplied = (authorization or "").removeprefix("Bearer ").strip()
        if not supplied or not hmac.compare_digest(supplied, token):
            raise Unauthorized("Missing or wrong API token (see SHIPYARD_HOME/token).")

    app.add_middleware(BodyLimit, max_bytes=ctx.settings.api_max_body_bytes)

    app.add_middleware(RequestId)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        """Anything unexpected: 500 with a request id, the traceback in the daemon's log; the
        next request is served as if nothing happened."""
        rid = getattr(request.state, "request_id", None) or secrets.token_hex(8)
        log.error("request %s %s failed (request id %s)", request.method, request.url.path,
                  rid, exc_info=exc)  # fmt: skip
        body = {
            "code": ShipyardError.code,
            "msg": f"Internal error (request id {rid}); the daemon's log has the details.",
            "fields": {"request_id": rid},
        }
        return JSONResponse(body, status_code=500, headers={"X-Request-ID": rid})

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
        disk = ctx.disk.status()
        return Health(
            status="ok", version=__version__, home=str(ctx.settings.home), pid=pid,
            disk=DiskView(
                path=disk.path, free_bytes=disk.free_bytes, total_bytes=disk.total_bytes,
                min_free_bytes=disk.min_free_bytes, low=disk.low, summary=disk.describe(),
            ),
        )  # fmt: skip

    @app.post("/v1/plan", dependencies=guarded, responses=_SOURCE)
    def plan(body: PlanBody) -> PlanView:
        if body.blueprint_text is not None:
            return engine.plan_text(body.blueprint_text, body.filename)
        return engine.plan(body.blueprint, body.repo, body.branch)

    @app.post("/v1/deploys", dependencies=guarded, status_code=202, responses=_OPERATION)
    def deploy(body: DeployBody) -> DeployAccepted:
        return engine.deploy(body.blueprint, body.repo, body.branch, body.services,
                             adopt=body.adopt, prune=body.prune,
                             clear_cache=body.clear_cache)  # fmt: skip

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

    add_datastore_routes(app, engine, guarded, _COMMON)
    add_cron_routes(app, engine, guarded, _COMMON)
    add_promote_routes(app, engine, guarded, _COMMON)
    if triggers is not None:
        add_trigger_routes(app, triggers, guarded, _COMMON)

    @app.post("/v1/secrets/rotate-key", dependencies=guarded,
              responses={**_COMMON, 409: _ERR, 422: _ERR})  # fmt: skip
    def rotate_key() -> KeyRotated:
        """A new encryption key for every stored secret; refused while an operation runs."""
        held = engine.claim_all("key rotation", timeout_s=0)
        try:
            busy = [n for n in engine.claim_names() if n not in held]
            if busy:
                raise Conflict(f"Operations are running on {', '.join(busy)}: rotate the key "
                               "when they are done.")  # fmt: skip
            box = ctx.box
            if not isinstance(box, SecretBox):
                raise Conflict("this Shipyard's secrets cannot be rotated")
            return KeyRotated(values=box.rotate(ctx.state.reencrypt))
        finally:
            engine.claims.free(held, "key rotation")

    @app.post("/v1/services/{name}/env/{key}/rotate", dependencies=guarded, status_code=202,
              responses=_OPERATION)  # fmt: skip
    def rotate_env(name: str, key: str) -> EnvChanged:
        return EnvChanged(service=name, id=envops.rotate_env(engine, name, key))

    @app.get("/v1/services/{name}/env", dependencies=guarded, responses=_SERVICE)
    def env(name: str, reveal: bool = False) -> EnvView:
        return env_view(ctx, name, reveal)

    @app.put("/v1/services/{name}/env", dependencies=guarded, responses=_OPERATION)
    def set_env(name: str, body: EnvBody) -> EnvChanged:
        _check_env(body)
        if body.group is not None:
            ops = envops.set_group_env(engine, body.group, body.set, body.unset, body.deploy)
            return EnvChanged(service=name, id=ops[0] if ops else None, operations=ops)
        op = envops.set_env(engine, name, body.set, body.unset, deploy=body.deploy)
        return EnvChanged(service=name, id=op)

    @app.post("/v1/shutdown", dependencies=guarded, status_code=202, responses=_COMMON)
    def stop(stop_services: bool = True) -> ShutdownAccepted:
        shutdown(stop_services)
        return ShutdownAccepted(status="stopping")

    return app
