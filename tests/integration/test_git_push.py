"""Push to deploy against a real daemon and real git: `git push shipyard main` over the local
path and over HTTP (the platform host on the public listener), a failed deploy rejecting the
push while the commit is kept, GitHub and GitLab webhooks (signed, wrongly signed, other
branch, skip marker, buildFilter, replay), and a deploy hook."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.integration.test_deploy import web
from tests.support.harness import Project, Shipyard, wait_for


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test",
           "PATH": "/usr/bin:/bin", "HOME": str(root.parent)}  # fmt: skip
    out = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600, check=False)  # fmt: skip
    if check:
        assert out.returncode == 0, f"git {' '.join(args)}: {out.stdout}{out.stderr}"
    return out


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").stdout.strip()


def platform(sy: Shipyard, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", sy.http_port, timeout=30)
    try:
        conn.request(method, path, body=body or None,
                     headers={"Host": "shipyard.localhost", **(headers or {})})  # fmt: skip
        resp = conn.getresponse()
        text = resp.read().decode()
        return resp.status, json.loads(text) if text.startswith("{") else {"text": text}
    finally:
        conn.close()


def github_push(sy: Shipyard, service: str, secret: str, branch: str, sha: str, message: str,
                files: list[str], delivery: str | None = None,
                signature: str | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    payload = json.dumps({
        "ref": f"refs/heads/{branch}", "before": "0" * 40, "after": sha,
        "head_commit": {"id": sha, "message": message},
        "commits": [{"id": sha, "message": message, "added": [], "modified": files,
                     "removed": []}],
        "repository": {"clone_url": "https://github.com/example/app.git"},
    }).encode()  # fmt: skip
    sig = "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return platform(sy, "POST", f"/webhooks/github/{service}", payload, {
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature or sig,
    })  # fmt: skip


def settled(sy: Shipyard, body: dict[str, Any]) -> str:
    """A trigger's status once it left the queue (it waits while its services are busy)."""
    if body.get("status") != "queued":
        return str(body.get("status"))
    with sy.client() as c:
        wait_for(lambda: c.trigger(body["ticket"]).status != "queued", timeout=120)
        return c.trigger(body["ticket"]).status


def live_commit(sy: Shipyard, service: str) -> str:
    with sy.client() as c:
        return next((r.git_commit for r in c.releases(service) if r.status == "live"), "")


def version(sy: Shipyard, service: str) -> str:
    return str(sy.get_json(service).get("version"))


def releases(sy: Shipyard, service: str) -> list[int]:
    with sy.client() as c:
        return [r.number for r in c.releases(service)]


def test_git_push_deploys_and_a_failed_deploy_rejects_the_push(
    shipyard: Shipyard, project: Project
) -> None:
    root = project.root
    bp = "services:\n" + web("pushed", "v1", instances=1)
    project.blueprint(bp)
    git(root, "init", "-q", "-b", "main")
    commit(root, "first")
    shipyard.ok("deploy", "-f", str(root), "--wait")  # a directory deploy first...
    assert version(shipyard, "pushed") == "v1"
    added = shipyard.ok("remote", "add", "--json", cwd=root)
    repo = json.loads(added.out)
    assert repo["branch"] == "main" and Path(repo["path"]).is_dir()
    assert git(root, "remote", "get-url", "shipyard").stdout.strip() == repo["path"]

    project.blueprint(bp.replace("v1", "v2"))
    second = commit(root, "v2")
    pushed = git(root, "push", "shipyard", "main")  # ...then a push: the same owner
    assert f"deployed {second[:12]}" in pushed.stderr, pushed.stderr
    assert "pushed: http://pushed.localhost" in pushed.stderr
    assert version(shipyard, "pushed") == "v2"
    assert live_commit(shipyard, "pushed") == second

    project.blueprint(bp.replace("v1", "v3").replace('echo "building', 'exit 3; echo "'))
    broken = commit(root, "broken build")
    rejected = git(root, "push", "shipyard", "main", check=False)
    assert rejected.returncode != 0
    assert "DEPLOY FAILED" in rejected.stderr and "exit code 3" in rejected.stderr
    bare = Path(repo["path"])
    assert git(bare, "rev-parse", "refs/shipyard/pushed/main").stdout.strip() == broken
    assert git(bare, "rev-parse", "refs/heads/main").stdout.strip() == second
    assert version(shipyard, "pushed") == "v2"  # still serving

    # over HTTP through the public listener, at the platform host
    project.blueprint(bp.replace("v1", "v4"))
    fourth = commit(root, "v4")
    shipyard.ok("remote", "add", "--name", "web", "--http", cwd=root)
    url = git(root, "remote", "get-url", "web").stdout.strip()
    assert url.startswith("http://shipyard:") and "@shipyard.localhost:" in url
    over_http = git(root, "push", "web", "main")
    assert f"deployed {fourth[:12]}" in over_http.stderr, over_http.stderr
    assert version(shipyard, "pushed") == "v4"
    wrong = url.replace(url.split("//")[1].split("@")[0], "shipyard:wrong")
    denied = git(root, "push", wrong, "main", check=False)
    assert denied.returncode != 0
    # nothing of the API answers at the platform host
    assert platform(shipyard, "GET", "/v1/services")[0] == 404


def test_webhooks_and_deploy_hook(shipyard: Shipyard, project: Project) -> None:
    root = project.root
    bp = "services:\n" + web("hooked", "v1", instances=1, extra="""\
    buildFilter:
      paths: [pyweb/**]
      ignoredPaths: ["**/*.md"]
""")  # fmt: skip
    project.blueprint(bp)
    git(root, "init", "-q", "-b", "main")
    commit(root, "first")
    shipyard.ok("remote", "add", cwd=root)
    git(root, "push", "shipyard", "main")
    assert version(shipyard, "hooked") == "v1"
    hooks = json.loads(shipyard.ok("hooks", "show", "hooked", "--json").out)
    assert set(hooks) >= {"deploy_hook_url", "github_webhook_url", "gitlab_webhook_url",
                          "webhook_secret"}  # fmt: skip
    secret = hooks["webhook_secret"]
    before = releases(shipyard, "hooked")

    # a new commit reaches Shipyard's repository by a push to another remote name
    (root / "pyweb" / "NOTES.md").write_text("docs only\n")
    docs = commit(root, "docs")
    sha = git(root, "rev-parse", "HEAD").stdout.strip()
    status, body = github_push(shipyard, "hooked", secret, "main", sha, "docs", ["x"],
                               signature="sha256=" + "0" * 64)  # fmt: skip
    assert status == 401 and releases(shipyard, "hooked") == before
    status, body = github_push(shipyard, "hooked", secret, "other", docs, "docs", ["x"])
    assert status == 202 and body["status"] == "ignored" and "other" in body["reason"]
    status, body = platform(shipyard, "POST", "/webhooks/github/hooked", b"{}", {
        "X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + hmac.new(
            secret.encode(), b"{}", hashlib.sha256).hexdigest()})  # fmt: skip
    assert status == 202 and body["status"] == "ignored"
    status, body = github_push(shipyard, "hooked", secret, "main", docs, "fix [skip render]",
                               ["pyweb/app.py"])  # fmt: skip
    assert status == 202 and "skip render" in body["reason"]
    git(root, "push", "-q", "shipyard", "main:refs/heads/staging")  # objects reach Shipyard
    status, body = github_push(shipyard, "hooked", secret, "main", docs, "docs",
                               ["pyweb/NOTES.md"])  # fmt: skip
    assert status == 202 and settled(shipyard, body) == "skipped", body  # buildFilter: a .md
    assert releases(shipyard, "hooked") == before

    project.blueprint(bp)  # unchanged Blueprint, a code change inside pyweb/
    (root / "pyweb" / "extra.txt").write_text("x\n")
    change = commit(root, "code")
    git(root, "push", "-q", "shipyard", "main:refs/heads/staging")
    delivery = str(uuid.uuid4())
    status, body = github_push(shipyard, "hooked", secret, "main", change, "code",
                               ["pyweb/extra.txt"], delivery=delivery)  # fmt: skip
    assert status == 202 and settled(shipyard, body) == "deploying", body
    wait_for(lambda: live_commit(shipyard, "hooked") == change, timeout=120)
    status, body = github_push(shipyard, "hooked", secret, "main", change, "code",
                               ["pyweb/extra.txt"], delivery=delivery)  # fmt: skip
    assert status == 200 and "already" in body["reason"]

    # GitLab: the token header
    pushed = {"id": change, "message": "code", "added": [], "modified": ["README"], "removed": []}
    payload = json.dumps({"ref": "refs/heads/main", "after": change, "checkout_sha": change,
                          "commits": [pushed]}).encode()  # fmt: skip
    status, _ = platform(shipyard, "POST", "/webhooks/gitlab/hooked", payload,
                         {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"})  # fmt: skip
    assert status == 401
    status, body = platform(shipyard, "POST", "/webhooks/gitlab/hooked", payload,
                            {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret})  # fmt: skip
    assert status == 202 and settled(shipyard, body) == "skipped"  # README: outside pyweb/**

    # the deploy hook: explicit, deploys the branch's newest commit
    hook = hooks["deploy_hook_url"].split(str(shipyard.http_port), 1)[1]
    count = len(releases(shipyard, "hooked"))
    assert platform(shipyard, "GET", hook.split("?")[0] + "?key=wrong")[0] == 401
    status, body = platform(shipyard, "POST", hook)
    assert status == 202 and body["deploy_id"], body
    wait_for(lambda: len(releases(shipyard, "hooked")) == count + 1, timeout=120)
    rotated = json.loads(shipyard.ok("hooks", "rotate", "hooked", "--json").out)
    assert rotated["webhook_secret"] != secret
    assert platform(shipyard, "GET", hook)[0] == 401  # the old key stopped working
