"""The REST API: OpenAPI, token auth, bad bodies, typed errors; CLI usage errors; logs -f."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard


def test_openapi_auth_and_bad_input(shipyard: Shipyard) -> None:
    base = shipyard.settings.api_url
    spec = httpx.get(f"{base}/openapi.json").json()
    for path in (
        "/v1/deploys",
        "/v1/services/{name}/rollback",
        "/v1/services/{name}/scale",
        "/v1/plan",
        "/v1/services/{name}/logs",
    ):
        assert path in spec["paths"]
    assert httpx.get(f"{base}/v1/health").json()["status"] == "ok"
    denied = httpx.get(f"{base}/v1/services")
    assert denied.status_code == 401 and denied.json()["code"] == "unauthorized"
    wrong = httpx.get(f"{base}/v1/services", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    token = shipyard.settings.token_path.read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    bad = httpx.post(f"{base}/v1/deploys", json={"blueprnt": "/x"}, headers=auth)
    assert bad.status_code == 400 and "blueprnt" in bad.json()["msg"]
    relative = httpx.post(f"{base}/v1/deploys", json={"blueprint": "render.yaml"}, headers=auth)
    assert relative.status_code == 400 and "absolute path" in relative.json()["msg"]
    nothing = httpx.post(f"{base}/v1/plan", json={}, headers=auth)
    assert nothing.status_code == 400
    bad = httpx.post(f"{base}/v1/services/x/scale", json={"instances": 0}, headers=auth)
    assert bad.status_code == 400 and "instances" in bad.json()["msg"]
    missing = httpx.get(f"{base}/v1/services/ghost", headers=auth)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert (shipyard.settings.token_path.stat().st_mode & 0o777) == 0o600


def test_cli_usage_errors(shipyard: Shipyard) -> None:
    typo = shipyard.cli("delpoy")
    assert typo.code == 2 and "Did you mean 'deploy'?" in typo.err
    assert shipyard.cli("scale", "web").code == 2
    assert shipyard.cli("releases", "ghost").code == 4
    assert "does not exist" in shipyard.cli("releases", "ghost").err


def test_logs_follow_streams_new_lines(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("follow", "v1", instances=1))
    deploy(shipyard, bp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli.main", "logs", "follow", "-f", "-n", "1"],
        env=shipyard.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline()  # the last line: the follower is reading
        shipyard.get("follow.localhost", "/?marker=streamed-42")
        deadline = time.monotonic() + 15
        seen = ""
        while time.monotonic() < deadline and "streamed-42" not in seen:
            seen += proc.stdout.readline()
        assert "streamed-42" in seen
    finally:
        proc.kill()
        proc.wait()


def test_second_deploy_of_a_busy_service_is_refused(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + web(
            "busy",
            "v1",
            instances=1,
            extra_env="""\
      - key: BOOT_DELAY
        value: "2"
""",
        )
    )
    first = shipyard.ok("deploy", "-f", str(bp), "--json")
    op = json.loads(first.out)
    second = shipyard.cli("deploy", "-f", str(bp))
    assert second.code == 5, second.text
    assert "in progress on busy (operation #" in second.err
    shipyard.ok("deploy-status", str(op["id"]), "--wait")
    assert shipyard.get_json("busy")["version"] == "v1"
    assert len(shipyard.client().releases("busy")) == 1  # the refused deploy built nothing
