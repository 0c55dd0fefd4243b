"""Cron jobs against a real daemon: scheduled runs (schedules sped up 60 times with
SHIPYARD_CRON_SPEED, so `* * * * *` comes due every second), manual runs with --wait, a run
skipped because the previous one still ran, a run killed at its maximum time, a deploy that
does not interrupt a running job, the history through the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.harness import Project, Shipyard, wait_for

YEARLY = "0 0 1 1 *"  # with the speed-up still days away: only manual runs happen


@pytest.fixture(scope="module")
def shipyard(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Shipyard]:
    sy = Shipyard(
        tmp_path_factory.mktemp("home"),
        extra_env={"SHIPYARD_CRON_TICK_S": "0.2", "SHIPYARD_CRON_SPEED": "60"},
    )
    sy.up()
    try:
        yield sy
    finally:
        sy.down()


def cron(name: str, command: str, *, version: str = "v1", schedule: str = YEARLY,
         extra: str = "") -> str:  # fmt: skip
    return f"""
  - type: cron
    name: {name}
    runtime: python
    rootDir: worker
    schedule: "{schedule}"
    buildCommand: echo "building {name} {version}"
    startCommand: {json.dumps(command)}
{extra}    envVars:
      - key: VERSION
        value: {version}
"""


def runs(sy: Shipyard, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(sy.ok("cron", "runs", name, "--json").out)
    return out


def deploy(sy: Shipyard, path: Path) -> None:
    sy.ok("deploy", "-f", str(path), "--wait")


def test_manual_runs_wait_and_history(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + cron("hello-job", 'echo "hello $VERSION from $RENDER_SERVICE_NAME ($PWD)"')
        + cron("failing-job", 'echo "about to fail"; exit 3')
    )
    deploy(shipyard, bp)
    done = shipyard.ok("cron", "run", "hello-job", "--wait")
    assert "hello v1 from hello-job" in done.out and "/worker)" in done.out
    assert "succeeded (exit code 0)" in done.out
    failed = shipyard.cli("cron", "run", "failing-job", "--wait")
    assert failed.code == 1, failed.text
    assert "about to fail" in failed.out and "failed (exit code 3)" in failed.out
    [run] = runs(shipyard, "hello-job")
    assert {"id", "service", "status", "trigger", "release", "started_at", "finished_at",
            "exit_code", "log"} <= set(run)  # fmt: skip
    assert (run["service"], run["status"], run["trigger"], run["release"], run["exit_code"]) == (
        "hello-job", "succeeded", "manual", 1, 0,
    )  # fmt: skip
    assert run["finished_at"] >= run["started_at"]
    log_dir = Path(run["log"])
    assert log_dir.is_relative_to(shipyard.home / "services" / "hello-job")
    assert "hello v1" in (log_dir / "current").read_text()
    logs = shipyard.ok("cron", "logs", "hello-job").out
    assert "hello v1" in logs
    ps = shipyard.ok("ps").out
    assert "hello-job" in ps and f"cron '{YEARLY}' (UTC)" in ps and "last run succeeded" in ps
    [view] = json.loads(shipyard.ok("ps", "hello-job", "--json").out)
    assert view["type"] == "cron" and view["cron"]["schedule"] == YEARLY
    assert view["cron"]["last_run"]["id"] == run["id"] and view["cron"]["next_run"] > 0
    assert view["desired_instances"] == 0 and view["instances"] == []
    shipyard.ok("cron", "run", "hello-job")  # without --wait: started, not awaited


def test_scheduled_runs_and_a_skipped_overlap(shipyard: Shipyard, project: Project) -> None:
    # due every second (sped up); each run takes 2.5 s: the due times in between are skipped
    bp = project.blueprint(
        "services:\n" + cron("ticker", 'echo "tick $VERSION"; sleep 2.5', schedule="* * * * *")
    )
    deploy(shipyard, bp)

    def seen() -> list[dict[str, Any]] | None:
        found = runs(shipyard, "ticker")
        statuses = {r["status"] for r in found}
        return found if {"succeeded", "skipped"} <= statuses else None

    found = wait_for(seen, timeout=40, interval=0.5)
    done = next(r for r in found if r["status"] == "succeeded")
    assert done["trigger"] == "schedule" and done["scheduled_at"] is not None
    assert "tick v1" in (Path(done["log"]) / "current").read_text()
    skipped = next(r for r in found if r["status"] == "skipped")
    assert "was still running" in skipped["reason"] and skipped["log"] == ""
    assert sum(r["status"] == "running" for r in found) <= 1
    refused = shipyard.cli("cron", "run", "ticker")
    if refused.code != 0:  # a run was in progress: one at a time
        assert refused.code == 5 and "running already" in refused.err, refused.text
    # a new schedule far away stops the ticking
    deploy(shipyard, project.blueprint("services:\n" + cron("ticker", "echo tick")))
    wait_for(lambda: all(r["status"] != "running" for r in runs(shipyard, "ticker")), timeout=20)
    count = len(runs(shipyard, "ticker"))
    wait_for(lambda: True)  # one more round of ticks at least
    assert len(runs(shipyard, "ticker")) == count


def test_a_run_over_its_maximum_time_is_killed(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + cron("stuck-job", 'sleep 300 & echo "child $!"; wait', extra="    maxRunSeconds: 2\n"),
        name="shipyard.yaml",
    )
    deploy(shipyard, bp)
    result = shipyard.cli("cron", "run", "stuck-job", "--wait", timeout=60)
    assert result.code == 1, result.text
    assert "timed_out" in result.out and "longer than 2 s" in result.out
    child = int(re.findall(r"child (\d+)$", result.out, re.MULTILINE)[0])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    [run] = runs(shipyard, "stuck-job")
    assert run["status"] == "timed_out" and run["finished_at"] - run["started_at"] < 15


def test_a_deploy_never_interrupts_a_running_job(shipyard: Shipyard, project: Project) -> None:
    gate = project.root / "let-it-finish"  # the run goes on until the test creates it
    command = (f'echo "start $VERSION"; for i in $(seq 600); do [ -e {gate} ] && break; '
               'sleep 0.1; done; echo "end $VERSION"')  # fmt: skip
    bp = project.blueprint("services:\n" + cron("slow-job", command))
    deploy(shipyard, bp)
    started = json.loads(shipyard.ok("cron", "run", "slow-job", "--json").out)
    assert started["status"] == "running" and started["release"] == 1
    deploy(shipyard, project.blueprint("services:\n" + cron("slow-job", command, version="v2")))
    [run] = runs(shipyard, "slow-job")
    assert run["status"] == "running"  # the deploy went live around it
    with shipyard.client() as c:
        assert c.service("slow-job").current_release == 2
    gate.touch()
    done = wait_for(
        lambda: next((r for r in runs(shipyard, "slow-job") if r["status"] != "running"), None),
        timeout=30,
    )
    assert (done["status"], done["release"]) == ("succeeded", 1)
    assert "end v1" in (Path(done["log"]) / "current").read_text()
    second = shipyard.ok("cron", "run", "slow-job", "--wait", timeout=60)
    assert "start v2" in second.out and "end v2" in second.out
    assert runs(shipyard, "slow-job")[0]["release"] == 2
    shipyard.ok("rollback", "slow-job", "--wait")  # a rollback is a release going live too
    with shipyard.client() as c:
        assert c.service("slow-job").current_release == 1
