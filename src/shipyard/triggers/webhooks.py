"""GitHub and GitLab push webhooks (pure): verification and parsing.

GitHub signs each delivery with ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``
under the webhook secret; GitLab sends the secret itself in ``X-Gitlab-Token``. Both are
compared in constant time. A delivery is identified by ``X-GitHub-Delivery`` /
``X-Gitlab-Event-UUID`` (replays are ignored by the caller).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Push:
    """A push event: the branch and the commit it ends at."""

    branch: str
    commit: str
    message: str  # the head commit's message
    files: tuple[str, ...] | None  # paths changed by the pushed commits (None: unknown)
    repository: str  # the repository's clone URL (for people, and to match a watched repo)


@dataclass(frozen=True)
class Ignored:
    reason: str


def github_valid(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature or not signature.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def gitlab_valid(secret: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(secret.encode(), token.encode())


def _changed(commits: Any) -> tuple[str, ...] | None:
    if not isinstance(commits, list) or not commits:
        return None
    files: list[str] = []
    for commit in commits:
        if not isinstance(commit, dict):
            return None
        for key in ("added", "modified", "removed"):
            value = commit.get(key) or []
            if not isinstance(value, list):
                return None
            files += [str(v) for v in value]
    return tuple(dict.fromkeys(files))


def _push(payload: Any, head_message: str, repo_url: str) -> Push | Ignored:
    if not isinstance(payload, dict):
        return Ignored("the payload is not a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return Ignored(f"not a branch push (ref {ref!r})")
    after = str(payload.get("after") or payload.get("checkout_sha") or "")
    if not after or set(after) == {"0"}:
        return Ignored(f"branch {ref.removeprefix('refs/heads/')} was deleted")
    commits = payload.get("commits")
    files = _changed(commits)
    # GitHub caps commits at 20 and GitLab at 20 too: beyond that, the file list is partial
    total = payload.get("total_commits_count")
    if isinstance(commits, list) and isinstance(total, int) and total > len(commits):
        files = None
    if isinstance(commits, list) and len(commits) >= 20 and total is None:
        files = None
    return Push(ref.removeprefix("refs/heads/"), after, head_message, files, repo_url)


def parse_github(event: str | None, body: bytes) -> Push | Ignored:
    if event == "ping":
        return Ignored("ping")
    if event != "push":
        return Ignored(f"event {event!r} is not a push")
    payload = _json(body)
    if isinstance(payload, Ignored):
        return payload
    head = payload.get("head_commit") if isinstance(payload, dict) else None
    message = str(head.get("message", "")) if isinstance(head, dict) else ""
    repo = payload.get("repository") if isinstance(payload, dict) else None
    url = str(repo.get("clone_url", "")) if isinstance(repo, dict) else ""
    return _push(payload, message, url)


def parse_gitlab(event: str | None, body: bytes) -> Push | Ignored:
    if event != "Push Hook":
        return Ignored(f"event {event!r} is not a push")
    payload = _json(body)
    if isinstance(payload, Ignored):
        return payload
    message = ""
    if isinstance(payload, dict):
        after = payload.get("checkout_sha") or payload.get("after")
        for commit in payload.get("commits") or []:
            if isinstance(commit, dict) and commit.get("id") == after:
                message = str(commit.get("message", ""))
    repo = payload.get("project") if isinstance(payload, dict) else None
    url = str(repo.get("git_http_url", "")) if isinstance(repo, dict) else ""
    return _push(payload, message, url)


def delivery_id(headers: Mapping[str, str]) -> str:
    for name in ("x-github-delivery", "x-gitlab-event-uuid", "x-gitlab-webhook-uuid",
                 "idempotency-key"):  # fmt: skip
        value = headers.get(name)
        if value:
            return f"{name}:{value[:200]}"
    return ""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Ignored("the payload is not JSON")
