"""API routes of the triggers: Shipyard's git repositories, pushes, tickets, hook secrets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.params import Depends

from shipyard.controlplane.triggerops import Ticket, Triggers
from shipyard.errors import UsageError
from shipyard.settings import Settings
from shipyard.source import gitrepo
from shipyard.triggers.models import (
    HooksView,
    ReceiveBody,
    ReceivedRef,
    ReceiveResult,
    RepoBody,
    RepoView,
    TicketView,
)


def platform_base(settings: Settings) -> str:
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{settings.platform_host}{port}"


def hooks_view(triggers: Triggers, service: str, rotate: bool = False) -> HooksView:
    triggers.ctx.state.service(service)  # 404 for an unknown service
    hooks = triggers.state.hooks(service, rotate=rotate)
    base = platform_base(triggers.ctx.settings)
    name = quote(service, safe="")
    return HooksView(
        service=service,
        deploy_hook_url=f"{base}/deploy/{name}?key={hooks.token}",
        github_webhook_url=f"{base}/webhooks/github/{name}",
        gitlab_webhook_url=f"{base}/webhooks/gitlab/{name}",
        webhook_secret=hooks.secret,
    )


def ticket_view(ticket: Ticket) -> TicketView:
    return TicketView(id=ticket.id, status=ticket.status, reason=ticket.reason,
                      deploy_id=ticket.deploy_id, services=ticket.services,
                      message=ticket.message)  # fmt: skip


def repo_view(triggers: Triggers, name: str) -> RepoView:
    repo = triggers.state.repo(name)
    settings = triggers.ctx.settings
    return RepoView(
        name=repo.name, path=str(gitrepo.repo_path(settings, name)),
        http_url=f"{platform_base(settings)}/git/{name}.git", branch=repo.branch,
        work_dir=repo.work_dir, push_token=repo.token,
    )  # fmt: skip


def default_name(work_dir: str) -> str:
    base = re.sub(r"[^a-z0-9._-]+", "-", Path(work_dir).name.lower()).strip("-._") or "app"
    return base[:64]


def add_routes(
    app: FastAPI, triggers: Triggers, guarded: Sequence[Depends], common: dict[int | str, Any]
) -> None:
    err = common[400]
    service = {**common, 404: err}
    repo_errors = {**common, 404: err, 409: err, 422: err}

    @app.post("/v1/repos", dependencies=guarded, responses=repo_errors)
    def add_repo(body: RepoBody) -> RepoView:
        work_dir = str(Path(body.work_dir).absolute())
        existing = triggers.state.repo_for_dir(work_dir)
        if existing is not None and body.name in (None, existing.name):
            return repo_view(triggers, existing.name)
        name = gitrepo.check_name(body.name or default_name(work_dir))
        if body.name is None:  # the directory's name, made unique: another project has it
            base, n = name, 2
            while (
                taken := triggers.state.find_repo(name)
            ) is not None and taken.work_dir != work_dir:
                name = gitrepo.check_name(f"{base[:60]}-{n}")
                n += 1
        if not re.match(r"^[A-Za-z0-9._/-]{1,200}$", body.branch) or ".." in body.branch:
            raise UsageError(
                f"{body.branch!r} is not a branch name.", fields={"branch": body.branch}
            )
        found = triggers.state.find_repo(name)
        if found is not None and found.work_dir != work_dir:
            raise UsageError(
                f"A Shipyard repository named {name!r} already belongs to {found.work_dir}; "
                "choose another name with --repo-name.", fields={"name": name},
            )  # fmt: skip
        gitrepo.create_repo(triggers.ctx.settings, name, body.branch)
        triggers.state.add_repo(name, work_dir, body.branch)
        return repo_view(triggers, name)

    @app.get("/v1/repos", dependencies=guarded, responses=common)
    def repos() -> list[RepoView]:
        return [repo_view(triggers, r.name) for r in triggers.state.repos()]

    @app.post("/v1/repos/{name}/receive", dependencies=guarded, responses=repo_errors)
    def receive(name: str, body: ReceiveBody) -> ReceiveResult:
        """Called by the repository's pre-receive hook with what a push updates."""
        return ReceiveResult(refs=receive_push(triggers, name, body))

    @app.get("/v1/triggers/{ticket_id}", dependencies=guarded, responses=service)
    def ticket(ticket_id: int) -> TicketView:
        return ticket_view(triggers.ticket(ticket_id))

    @app.get("/v1/services/{name}/hooks", dependencies=guarded, responses=service)
    def hooks(name: str) -> HooksView:
        return hooks_view(triggers, name)

    @app.post("/v1/services/{name}/hooks/rotate", dependencies=guarded, responses=repo_errors)
    def rotate_hooks(name: str) -> HooksView:
        return hooks_view(triggers, name, rotate=True)


def receive_push(triggers: Triggers, name: str, body: ReceiveBody) -> list[ReceivedRef]:
    repo = triggers.state.repo(name)
    path = gitrepo.repo_path(triggers.ctx.settings, name)
    gitrepo.keep_quarantined(path, body.quarantine)
    out: list[ReceivedRef] = []
    for update in body.updates:
        if not update.ref.startswith("refs/heads/"):
            out.append(ReceivedRef(ref=update.ref, commit=update.new, action="ignored",
                                   message="not a branch: stored, not deployed"))  # fmt: skip
            continue
        branch = update.ref.removeprefix("refs/heads/")
        if set(update.new) == {"0"}:
            out.append(ReceivedRef(ref=update.ref, commit=update.new, action="ignored",
                                   message="branch deleted"))  # fmt: skip
            continue
        if not gitrepo.COMMIT.match(update.new):
            raise UsageError(f"{update.new!r} is not a commit id.")
        if branch != repo.branch:
            out.append(ReceivedRef(
                ref=update.ref, commit=update.new, action="stored",
                message=f"stored; only pushes to {repo.branch} deploy",
            ))  # fmt: skip
            continue
        # kept whatever the deploy does: a rejected push (failed deploy) loses no commit
        gitrepo.update_ref(path, f"refs/shipyard/pushed/{branch}", update.new)
        job = triggers.push_job(name, update.old, update.new, branch)
        ticket = triggers.submit(job)
        out.append(ReceivedRef(ref=update.ref, commit=update.new, action="deploy",
                               ticket=ticket.id, message=ticket.message))  # fmt: skip
    return out
