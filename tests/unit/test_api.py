"""The REST API in-process (FastAPI TestClient) over the real engine and state, with the public
fakes for processes, edge and time."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.context import Context
from shipyard.controlplane.api import create_app
from shipyard.controlplane.engine import Engine
from shipyard.testing import FakeRuntime, make_context

TOKEN = "test-token"
WORKER = """
services:
  - type: worker
    name: jobs
    runtime: node
    buildCommand: npm ci
    startCommand: node worker.js
    envVars:
      - {key: SECRET_TOKEN, value: hunter2}
"""


@dataclass
class Api:
    ctx: Context
    http: TestClient
    project: Path
    shutdowns: list[bool]

    @property
    def runtime(self) -> FakeRuntime:
        assert isinstance(self.ctx.runtime, FakeRuntime)
        return self.ctx.runtime

    def blueprint(self, text: str = WORKER) -> str:
        path = self.project / "render.yaml"
        path.write_text(textwrap.dedent(text))
        return str(path)

    def wait(self, op_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            op: dict[str, Any] = self.http.get(f"/v1/deploys/{op_id}").json()
            if op["status"] != "running":
                return op
            time.sleep(0.02)
        raise AssertionError(f"operation {op_id} did not finish")

    def deploy(self, text: str = WORKER) -> dict[str, Any]:
        accepted = self.http.post("/v1/deploys", json={"blueprint": self.blueprint(text)})
        assert accepted.status_code == 202, accepted.text
        return self.wait(accepted.json()["id"])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    ctx = make_context(tmp_path / "home")
    project = tmp_path / "repo"
    project.mkdir()
    (project / "worker.js").write_text("setInterval(() => {}, 1000)\n")
    shutdowns: list[bool] = []
    app = create_app(Engine(ctx), TOKEN, shutdowns.append)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield Api(ctx, http, project, shutdowns)


def test_health_needs_no_token_everything_else_does(api: Api) -> None:
    assert api.http.get("/v1/health", headers={"Authorization": ""}).json()["status"] == "ok"
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        denied = api.http.get("/v1/services", headers=headers)
        assert denied.status_code == 401
        assert denied.json() == {
            "code": "unauthorized",
            "msg": "Missing or wrong API token (see SHIPYARD_HOME/token).",
            "fields": {},
        }


def test_bad_requests_say_what_and_where(api: Api) -> None:
    typo = api.http.post("/v1/deploys", json={"blueprnt": "/x"})
    assert typo.status_code == 400 and typo.json()["code"] == "usage"
    assert "blueprnt" in typo.json()["msg"]
    relative = api.http.post("/v1/plan", json={"blueprint": "render.yaml"})
    assert relative.status_code == 400 and "absolute path" in relative.json()["msg"]
    scale = api.http.post("/v1/services/jobs/scale", json={"instances": 0})
    assert scale.status_code == 400 and "instances" in scale.json()["msg"]
    missing = api.http.get("/v1/services/ghost")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    nofile = api.http.post("/v1/plan", json={"blueprint": "/nonexistent/render.yaml"})
    assert nofile.status_code == 400 and "does not exist" in nofile.json()["msg"]


def test_deploy_scale_and_read_back(api: Api) -> None:
    op = api.deploy()
    assert op["status"] == "succeeded" and op["result"]["jobs"]["release"] == 1, op
    [svc] = api.http.get("/v1/services").json()
    assert (svc["name"], svc["status"], svc["running_instances"]) == ("jobs", "live", 1)
    assert svc["env_keys"] == ["SECRET_TOKEN"] and "hunter2" not in str(svc)
    assert api.runtime.ran[0].command == "npm ci"  # the build ran through the runtime
    started = api.runtime.started[-1].env
    assert started["SECRET_TOKEN"] == "hunter2" and started["RENDER_SERVICE_NAME"] == "jobs"
    scaled = api.http.post("/v1/services/jobs/scale", json={"instances": 3})
    assert scaled.status_code == 202
    assert api.wait(scaled.json()["id"])["status"] == "succeeded"
    assert api.http.get("/v1/services/jobs").json()["running_instances"] == 3
    releases = api.http.get("/v1/services/jobs/releases").json()
    assert [(r["number"], r["status"], r["current"]) for r in releases] == [(1, "live", True)]
    nothing = api.http.post("/v1/services/jobs/rollback", json={})
    assert nothing.status_code == 409 and "No earlier good release" in nothing.json()["msg"]
    events = api.http.get(f"/v1/deploys/{op['id']}/events").json()
    assert any("release 1 is live" in e["message"] for e in events["events"])


def test_a_failed_build_is_reported_with_its_code(api: Api) -> None:
    api.runtime.run_exit = 7
    op = api.deploy()
    assert (op["status"], op["error_code"]) == ("failed", "build_failed"), op
    assert "build command exited with code 7" in op["result"]["jobs"]["error"]
    view = api.http.get("/v1/services/jobs").json()
    assert (view["status"], view["never_served"]) == ("failed", True), view


def test_shutdown_is_accepted(api: Api) -> None:
    answer = api.http.post("/v1/shutdown", params={"stop_services": False})
    assert (answer.status_code, answer.json()) == (202, {"status": "stopping"})
    assert api.shutdowns == [False]


def test_openapi_documents_every_error_the_routes_return(api: Api) -> None:
    spec = api.http.get("/openapi.json").json()
    assert "ErrorBody" in spec["components"]["schemas"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            codes = set(op["responses"])
            assert "500" in codes, (method, path)
            if path != "/v1/health":
                assert {"400", "401"} <= codes, (method, path, codes)
            if "{name}" in path or "{deploy_id}" in path:
                assert "404" in codes, (method, path)
            if method == "post" and path != "/v1/shutdown" and path != "/v1/plan":
                assert {"409", "422"} <= codes, (method, path)


def test_an_unexpected_error_is_a_500_with_a_request_id_and_breaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_context(tmp_path / "home")
    engine = Engine(ctx)

    def broken(*_: object) -> None:
        raise ZeroDivisionError("a bug")

    engine.scale = broken  # type: ignore[method-assign,assignment]
    app = create_app(engine, TOKEN, lambda _: None)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, headers=auth, raise_server_exceptions=False) as http:
        answer = http.post("/v1/services/jobs/scale", json={"instances": 2})
        assert answer.status_code == 500
        body = answer.json()
        rid = body["fields"]["request_id"]
        assert answer.headers["x-request-id"] == rid and rid in body["msg"]
        assert "a bug" not in body["msg"]  # details go to the log, not to the caller
        assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
        fine = http.get("/v1/services")
        assert fine.status_code == 200 and fine.headers["x-request-id"] != rid


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    huge = "#" * (api.ctx.settings.api_max_body_bytes + 1)
    answer = api.http.post("/v1/plan", json={"blueprint_text": huge})
    assert answer.status_code == 413 and answer.json()["code"] == "limit_exceeded"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(9):
            yield b" " * (1 << 20)

    chunked = api.http.post("/v1/plan", content=chunks())
    assert chunked.status_code == 413
    text = api.http.post("/v1/plan", json={"blueprint_text": WORKER, "filename": "render.yaml"})
    assert text.status_code == 200 and text.json()["steps"][0]["service"] == "jobs"
