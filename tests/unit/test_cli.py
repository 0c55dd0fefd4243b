"""The CLI in-process (click's CliRunner) against the API in-process (TestClient): output,
--json and exit codes, with the public fakes underneath."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from shipyard.cli.main import cli
from shipyard.client import Client
from shipyard.controlplane.api import create_app
from shipyard.controlplane.engine import Engine
from shipyard.testing import FakeRuntime, make_context
from tests.unit.test_api import WORKER


class Shell:
    def __init__(self, tmp_path: Path) -> None:
        self.ctx = make_context(tmp_path / "home")
        self.project = tmp_path / "repo"
        self.project.mkdir()
        (self.project / "worker.js").write_text("setInterval(() => {}, 1000)\n")
        (self.project / "render.yaml").write_text(textwrap.dedent(WORKER))
        app = create_app(Engine(self.ctx), "tok", lambda stop: None)
        self.http = TestClient(app, headers={"Authorization": "Bearer tok"})
        self.runner = CliRunner()

    @property
    def runtime(self) -> FakeRuntime:
        assert isinstance(self.ctx.runtime, FakeRuntime)
        return self.ctx.runtime

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(
            cli, list(args), obj=lambda: Client(self.ctx.settings, http=self.http)
        )


@pytest.fixture
def sh(tmp_path: Path) -> Iterator[Shell]:
    shell = Shell(tmp_path)
    with shell.http:
        yield shell


def test_deploy_wait_prints_progress_and_succeeds(sh: Shell) -> None:
    result = sh("deploy", "-f", str(sh.project), "--wait")
    assert result.exit_code == 0, result.output
    assert "+ jobs (worker): create" in result.output
    assert "release 1 is live" in result.output and "succeeded" in result.output
    table = sh("ps")
    assert table.exit_code == 0 and "jobs" in table.output and "live" in table.output
    data = json.loads(sh("ps", "--json").output)
    assert data[0]["name"] == "jobs" and data[0]["instances"][0]["state"] == "running"
    releases = json.loads(sh("releases", "jobs", "--json").output)
    assert [(r["number"], r["status"]) for r in releases] == [(1, "live")]


def test_a_failed_build_exits_10_and_a_failed_start_11(sh: Shell) -> None:
    sh.runtime.run_exit = 3
    build = sh("deploy", "-f", str(sh.project), "--wait")
    assert build.exit_code == 10, build.output
    assert "build command exited with code 3" in build.output
    sh.runtime.run_exit = 0
    sh.runtime.start_dead = True
    start = sh("deploy", "-f", str(sh.project), "--wait")
    assert start.exit_code == 11, start.output
    assert "failed to start" in start.output
    as_json = sh("deploy", "-f", str(sh.project), "--wait", "--json")
    assert as_json.exit_code == 11
    assert json.loads(as_json.output[: as_json.output.rindex("}") + 1])["error_code"] == (
        "deploy_failed"
    )


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("deplyo",), 2, "Did you mean 'deploy'?"),
        (("scale", "jobs"), 2, "Expected SERVICE=N"),
        (("scale", "jobs=0"), 2, "body.instances: Input should be greater than or equal to 1"),
        (("releases", "ghost"), 4, "Service 'ghost' does not exist"),
        (("deploy", "--branch", "x"), 2, "--branch needs --repo"),
        (("rollback", "ghost"), 4, "does not exist"),
    ],
)
def test_bad_input_exits_with_its_code(
    sh: Shell, args: tuple[str, ...], code: int, text: str
) -> None:
    result = sh(*args)
    assert result.exit_code == code, result.output
    assert text in result.output


def test_plan_json(sh: Shell) -> None:
    plan = json.loads(sh("plan", "-f", str(sh.project), "--json").output)
    assert plan["steps"] == [
        {"service": "jobs", "type": "worker", "action": "create", "changes": []}
    ]
