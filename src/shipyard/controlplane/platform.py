"""What the public HTTP listener serves at the platform host (SHIPYARD_PLATFORM_HOST, default
shipyard.localhost), and nothing else of the API: deploy hooks, GitHub and GitLab webhooks,
and git's smart HTTP protocol for Shipyard's repositories (``git http-backend``, HTTP Basic
auth with the repository's push token or the API token).

    GET|POST /deploy/<service>?key=<key>       a deploy hook
    POST     /webhooks/github/<service>        X-Hub-Signature-256 (HMAC-SHA256 of the body)
    POST     /webhooks/gitlab/<service>        X-Gitlab-Token
    GET|POST /git/<repo>.git/...               git clone/fetch/push over HTTP
"""

from __future__ import annotations

import base64
import hmac
import logging
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from shipyard.controlplane.triggerops import Triggers
from shipyard.errors import ShipyardError
from shipyard.source import gitrepo
from shipyard.triggers import webhooks
from shipyard.triggers.filters import skip_marker

log = logging.getLogger("shipyard.platform")
MAX_PUSH_BYTES = 2 * 1024**3
MAX_WEBHOOK_BYTES = 25 * 1024**2  # GitHub caps payloads at 25 MB


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_platform_app(triggers: Triggers, token: str) -> FastAPI:
    app = FastAPI(title="Shipyard platform", docs_url=None, redoc_url=None, openapi_url=None)
    ctx = triggers.ctx

    @app.exception_handler(ShipyardError)
    async def shipyard_error(_: Request, exc: ShipyardError) -> JSONResponse:
        return _error(exc.http_status, exc.message)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/deploy/{service}", methods=["GET", "POST"])
    def deploy_hook(service: str, key: str = "") -> JSONResponse:
        hooks = triggers.state.find_hooks(service)
        if hooks is None or not key or not hmac.compare_digest(key, hooks.token):
            return _error(401, "wrong or missing deploy hook key")
        ticket = triggers.deploy_hook(service)
        return JSONResponse({"ticket": ticket.id, "status": ticket.status,
                             "deploy_id": ticket.deploy_id, "message": ticket.message},
                            status_code=202)  # fmt: skip

    async def _body(request: Request) -> bytes | JSONResponse:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_WEBHOOK_BYTES):
            return _error(413, f"payload over {MAX_WEBHOOK_BYTES} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return _error(413, f"payload over {MAX_WEBHOOK_BYTES} bytes")
        return body

    @app.post("/webhooks/{provider}/{service}")
    async def webhook(provider: str, service: str, request: Request) -> JSONResponse:
        if provider not in ("github", "gitlab"):
            return _error(404, f"no webhook for {provider!r}: use github or gitlab")
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        hooks = triggers.state.find_hooks(service)
        headers = request.headers
        if provider == "github":
            valid = hooks is not None and webhooks.github_valid(
                hooks.secret, body, headers.get("x-hub-signature-256"))  # fmt: skip
        else:
            valid = hooks is not None and webhooks.gitlab_valid(
                hooks.secret, headers.get("x-gitlab-token"))  # fmt: skip
        if not valid:
            return _error(401, "wrong or missing webhook signature")
        return await run_in_threadpool(_webhook, triggers, provider, service, dict(headers), body)

    @app.api_route("/git/{name}.git/{rest:path}", methods=["GET", "POST"])
    async def git_http(name: str, rest: str, request: Request) -> Response:
        repo = triggers.state.find_repo(name)
        if not _authorized(request.headers.get("authorization"), repo.token if repo else "", token):
            return Response("authentication required\n", status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="Shipyard"'})  # fmt: skip
        if repo is None:
            return Response(f"no repository {name!r}\n", status_code=404)
        spool = tempfile.TemporaryFile(dir=ctx.settings.home / "tmp")  # noqa: SIM115 - closed by _cgi
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_PUSH_BYTES:
                spool.close()
                return Response("push over 2 GiB\n", status_code=413)
            spool.write(chunk)
        spool.seek(0)
        env = {
            "GIT_PROJECT_ROOT": str(gitrepo.repos_dir(ctx.settings)),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{name}.git/{rest}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.url.query,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "REMOTE_USER": "shipyard",
            "REMOTE_ADDR": request.client.host if request.client else "",
            "GIT_HTTP_MAX_REQUEST_BUFFER": str(MAX_PUSH_BYTES),
        }
        if request.headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = request.headers["content-encoding"]
        if request.headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = request.headers["git-protocol"]
        env["CONTENT_LENGTH"] = str(size)
        return await run_in_threadpool(_cgi, env, spool)

    return app


def _authorized(header: str | None, repo_token: str, api_token: str) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    password = decoded.partition(":")[2]
    ok = bool(repo_token) and hmac.compare_digest(password.encode(), repo_token.encode())
    return ok or hmac.compare_digest(password.encode(), api_token.encode())


def _cgi(env: dict[str, str], body: Any) -> Response:
    """Run git http-backend for one request; its CGI headers become the response's."""
    full = {**gitrepo._clean_env(), **env}
    proc = subprocess.Popen(
        ["git", "http-backend"], stdin=body, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=full,
    )  # fmt: skip
    assert proc.stdout is not None
    status, headers = 200, {}
    while True:
        line = proc.stdout.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode("latin-1").partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[key.strip()] = value.strip()

    def stream() -> Iterator[bytes]:
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read1(65536):  # type: ignore[attr-defined]
                yield chunk
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            proc.wait()
            body.close()
            if proc.returncode:
                log.warning("git http-backend exited %s: %s", proc.returncode, err.strip()[-500:])

    media = headers.pop("Content-Type", None)
    return StreamingResponse(stream(), status_code=status, headers=headers, media_type=media)


def _webhook(triggers: Triggers, provider: str, service: str, headers: dict[str, str],
             body: bytes) -> JSONResponse:  # fmt: skip
    event = headers.get("x-github-event") if provider == "github" else headers.get("x-gitlab-event")
    parsed = (webhooks.parse_github if provider == "github" else webhooks.parse_gitlab)(event, body)
    if isinstance(parsed, webhooks.Ignored):
        return JSONResponse({"status": "ignored", "reason": parsed.reason}, status_code=202)
    delivery = webhooks.delivery_id(headers)
    if delivery and not triggers.state.first_delivery(delivery):
        return JSONResponse({"status": "ignored", "reason": "delivery already received"},
                            status_code=200)  # fmt: skip
    src = triggers.state.source(service)
    if src is None:
        return _error(409, f"{service} has not been deployed yet: deploy it once first")
    watched = triggers.watched(src)
    url, branch = watched or (src.location, src.branch)
    if parsed.branch != branch:
        return JSONResponse({"status": "ignored",
                             "reason": f"push to {parsed.branch}; {service} deploys {branch}"},
                            status_code=202)  # fmt: skip
    marker = skip_marker(parsed.message)
    if marker:
        return JSONResponse({"status": "ignored", "reason": f"the commit message holds {marker}"},
                            status_code=202)  # fmt: skip
    if src.kind == "dir" and watched is None:
        job = triggers.dir_job(src, f"{provider} push ({parsed.commit[:8]})", None)
        job.files, job.auto = parsed.files, True
    else:
        made = triggers.watch_job(src, url, branch, auto=True, reason=f"{provider} push",
                                  files=parsed.files, commit=parsed.commit)  # fmt: skip
        if made is None:
            return JSONResponse({"status": "ignored", "reason": "skip marker"}, status_code=202)
        job = made
    ticket = triggers.submit(job)
    return JSONResponse({"status": ticket.status, "ticket": ticket.id,
                         "deploy_id": ticket.deploy_id, "message": ticket.message},
                        status_code=202)  # fmt: skip
