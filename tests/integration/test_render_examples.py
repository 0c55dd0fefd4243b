"""Render's own example Blueprints deploy unchanged: each repository of
github.com/render-examples vendored as it is (render.yaml, lockfiles and all) in
tests/compat/<name>/, committed to a fresh git repository, deployed with `shipyard deploy`
and asked for its page through the edge. docs/compatibility.md has the table (and why the
examples without a test here cannot deploy). Builds download from the npm registry and PyPI."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.support.harness import REPO, Shipyard, wait_for

COMPAT = REPO / "tests" / "compat"

# A build installs a framework's dependencies (and a Node version) from the registries.
DEPLOY_TIMEOUT = 900
pytestmark = pytest.mark.timeout(DEPLOY_TIMEOUT + 300)


def checkout(name: str, tmp_path: Path) -> Path:
    """The example as a git work tree of its own: one commit of the vendored files."""
    root = tmp_path / name
    shutil.copytree(COMPAT / name, root)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # fmt: skip
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", name]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


def deploy(sy: Shipyard, root: Path, *services: str) -> str:
    """`shipyard deploy -f <root> --wait`; on failure the assertion shows the deploy's events
    and the build log of each of ``services``."""
    result = sy.cli("deploy", "-f", str(root), "--wait", timeout=DEPLOY_TIMEOUT)
    if result.code != 0:
        logs = "".join(
            f"\n--- shipyard logs {s} --build\n" + sy.cli("logs", s, "--build", "-n", "80").text
            for s in services
        )
        raise AssertionError(f"deploy of {root.name} failed ({result.code}):\n{result.text}{logs}")
    return result.text


def page(sy: Shipyard, service: str, path: str = "/") -> tuple[int, str]:
    return sy.get(f"{service}.localhost", path, timeout=60)


def logs(sy: Shipyard, service: str) -> str:
    return sy.ok("logs", service, "-n", "200").out


def test_fastapi(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/fastapi: Python, pip, uvicorn on $PORT."""
    deploy(shipyard, checkout("fastapi", tmp_path), "fastapi-example")
    status, body = page(shipyard, "fastapi-example")
    assert status == 200 and json.loads(body) == {"message": "Hello World"}, body
    status, body = page(shipyard, "fastapi-example", "/items/7?q=ship")
    assert status == 200 and json.loads(body) == {"item_id": 7, "q": "ship"}, body


def test_fastify_hello_world(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/fastify-hello-world: Node 18.x (package.json engines), npm, listens on
    0.0.0.0 only when RENDER is set."""
    deploy(shipyard, checkout("fastify-hello-world", tmp_path), "fastify-hello-world-example")
    status, body = page(shipyard, "fastify-hello-world-example")
    assert status == 200 and "<title>Hello from Render!</title>" in body, body[:500]


def test_sveltekit(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/sveltekit: npm, a Vite build, adapter-node's server on $PORT."""
    deploy(shipyard, checkout("sveltekit", tmp_path), "sveltekit")
    status, body = page(shipyard, "sveltekit")
    assert status == 200 and "SvelteKit app" in body, body[:500]
    status, body = page(shipyard, "sveltekit", "/about")
    assert status == 200 and "About this app" in body, body[:500]


def test_nextjs_hello_world(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/nextjs-hello-world: yarn 1 (yarn.lock, through corepack), `next build`,
    `next start` on $PORT."""
    deploy(shipyard, checkout("nextjs-hello-world", tmp_path), "next-js")
    status, body = page(shipyard, "next-js")
    assert status == 200 and "Hello World." in body, body[:500]
    status, body = page(shipyard, "next-js", "/about")
    assert status == 200, body[:500]


def test_django(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/django: a PostgreSQL database (fromDatabase), build.sh (pip,
    collectstatic, migrate against the database), gunicorn with uvicorn workers,
    ALLOWED_HOSTS from RENDER_EXTERNAL_HOSTNAME, whitenoise static files."""
    deploy(shipyard, checkout("django", tmp_path), "mysite")
    status, body = page(shipyard, "mysite")
    assert status == 200 and "Hello World!" in body, body[:500]
    static = body.split('<img src="', 1)[1].split('"', 1)[0]  # hashed by whitenoise's manifest
    status, _ = page(shipyard, "mysite", static)
    assert status == 200, static
    migrations = "SELECT count(*) FROM django_migrations"  # build.sh's `manage.py migrate`
    assert int(shipyard.ok("psql", "mysitedb", "--", "-AtXc", migrations).out.strip()) > 0


def test_celery(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/celery: Key Value (legacy `type: redis`) as the broker of a Flask app
    (gunicorn on $PORT), a Celery worker and Flower (on its fixed port 5555)."""
    deploy(shipyard, checkout("celery", tmp_path), "app", "celery-worker", "flower")
    status, body = page(shipyard, "app")
    assert status == 200 and 'action="/add"' in body, body[:500]
    conn = http.client.HTTPConnection("127.0.0.1", shipyard.http_port, timeout=30)
    try:
        form = urllib.parse.urlencode({"x": "20", "y": "22"})
        headers = {"Host": "app.localhost", "Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/add", body=form, headers=headers)
        resp = conn.getresponse()
        assert resp.status == 302, resp.read()[:500]
    finally:
        conn.close()
    wait_for(lambda: "Adding 20 + 22" in logs(shipyard, "celery-worker"), timeout=60)
    status, body = page(shipyard, "flower")
    assert status == 200 and "Flower" in body, body[:500]


def test_webhook_receiver(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/webhook-receiver: pnpm 9 (pnpm-lock.yaml, through corepack), a
    TypeScript build; its two `sync: false` keys supplied with `env set` first, as Render's
    dashboard asks for them."""
    root = checkout("webhook-receiver", tmp_path)
    shipyard.ok(
        "env", "set", "webhook-receiver", "--no-deploy",
        "RENDER_WEBHOOK_SECRET=whsec_c2hpcHlhcmQtY29tcGF0LXRlc3Qtc2VjcmV0",
        "RENDER_API_KEY=rnd_compat_test",
    )  # fmt: skip
    deploy(shipyard, root, "webhook-receiver")
    status, body = page(shipyard, "webhook-receiver")
    assert status == 200 and body == "Render Webhook Receiver is listening!", body[:500]
    conn = http.client.HTTPConnection("127.0.0.1", shipyard.http_port, timeout=30)
    try:
        headers = {"Host": "webhook-receiver.localhost", "Content-Type": "application/json"}
        conn.request("POST", "/webhook", body=b"{}", headers=headers)
        assert conn.getresponse().status == 400  # unsigned: refused by standardwebhooks
    finally:
        conn.close()


def test_ioredis(shipyard: Shipyard, tmp_path: Path) -> None:
    """render-examples/ioredis: a worker (yarn 1, `env: node`) reaching Key Value through the
    connectionString its fromService gets."""
    deploy(shipyard, checkout("ioredis", tmp_path), "ioredis-worker")
    wait_for(lambda: "Result for key animal: cat" in logs(shipyard, "ioredis-worker"), timeout=60)
