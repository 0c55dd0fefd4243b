"""API models of the triggers (git remotes, pushes, hooks), shared by server, client and CLI."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shipyard.apimodels import Model


class RepoBody(Model):
    work_dir: str = Field(description="the project's directory (its git work tree's top)")
    name: str | None = Field(None, description="repository name (default: the directory's)")
    branch: str = Field("main", description="the branch whose pushes deploy")


class RepoView(Model):
    name: str
    path: str = Field(description="the repository on this machine (a remote URL for git)")
    http_url: str = Field(description="the repository over HTTP on the public listener")
    branch: str
    work_dir: str
    push_token: str = Field(description="the password of HTTP pushes (any user name)")


class RefUpdate(Model):
    old: str
    new: str
    ref: str


class ReceiveBody(Model):
    updates: list[RefUpdate]
    quarantine: str = Field("", description="GIT_QUARANTINE_PATH of the pre-receive hook")


class ReceivedRef(Model):
    ref: str
    commit: str
    action: Literal["deploy", "stored", "ignored"]
    ticket: int | None = None
    message: str = ""


class ReceiveResult(Model):
    refs: list[ReceivedRef]


class TicketView(Model):
    id: int
    status: Literal["queued", "deploying", "skipped", "superseded", "failed"]
    reason: str
    deploy_id: int | None = Field(None, description="the deploy operation, once it started")
    services: list[str] = Field(default_factory=list)
    message: str = ""


class HooksView(Model):
    service: str
    deploy_hook_url: str
    github_webhook_url: str
    gitlab_webhook_url: str
    webhook_secret: str


class HookAccepted(Model):
    ticket: int
    status: str
    deploy_id: int | None = None
    message: str = ""
