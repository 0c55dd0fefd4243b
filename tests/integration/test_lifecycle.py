"""Rollback, scale, crash restarts, pre-deploy, git sources, plan, logs, invalid input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, load, wait_for


def test_rollback_and_releases(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("roll", "v1"))
    for version in ("v1", "v2", "v3"):
        project.blueprint("services:\n" + web("roll", version))
        deploy(shipyard, bp)
    releases = json.loads(shipyard.ok("releases", "roll", "--json").out)
    assert [(r["number"], r["status"], r["current"]) for r in releases] == [
        (3, "live", True),
        (2, "superseded", False),
        (1, "superseded", False),
    ]
    human = shipyard.ok("releases", "roll").out
    assert "RELEASE" in human and "live" in human
    with load(shipyard.http_port, "roll.localhost") as result:
        shipyard.ok("rollback", "roll")
    assert result.failed == 0, result.errors[:5]
    assert shipyard.get_json("roll")["version"] == "v2"
    shipyard.ok("rollback", "roll", "--to", "1")
    assert shipyard.get_json("roll")["version"] == "v1"
    statuses = {r.number: r.status for r in shipyard.client().releases("roll")}
    assert statuses == {1: "live", 2: "rolled-back", 3: "rolled-back"}
    bad = shipyard.cli("rollback", "roll", "--to", "9")
    assert bad.code == 4 and "Release 9 does not exist" in bad.err
    # rollback reuses the artifact: no new release was built
    assert len(shipyard.client().releases("roll")) == 3


def test_scale_up_and_down_under_load(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("sc", "v1", instances=1))
    deploy(shipyard, bp)
    with load(shipyard.http_port, "sc.localhost") as result:
        shipyard.ok("scale", "sc=3")
        assert shipyard.service("sc")["running_instances"] == 3
        pids = {json.loads(shipyard.get("sc.localhost")[1])["pid"] for _ in range(12)}
        assert len(pids) == 3  # round robin reaches every instance
        shipyard.ok("scale", "sc=1")
    assert result.failed == 0, result.errors[:5]
    svc = shipyard.service("sc")
    assert svc["running_instances"] == 1 and svc["desired_instances"] == 1
    # a redeploy keeps the manual scale (the Blueprint's numInstances did not change)
    shipyard.ok("scale", "sc=2")
    deploy(shipyard, bp)
    assert shipyard.service("sc")["running_instances"] == 2
    assert shipyard.cli("scale", "sc=0").code == 2
    assert shipyard.cli("scale", "nope=2").code == 4


def test_crashed_instance_is_restarted(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("crashy", "v1", instances=2))
    deploy(shipyard, bp)
    before = shipyard.service("crashy")["instances"]
    victim = before[0]
    os.killpg(victim["pid"], signal.SIGKILL)

    def restarted() -> dict[str, object] | None:
        inst = next(i for i in shipyard.service("crashy")["instances"] if i["id"] == victim["id"])
        return inst if inst["state"] == "running" and inst["pid"] != victim["pid"] else None

    inst = wait_for(restarted)
    assert inst["restarts"] == 1 and "signal 9" in str(inst["last_exit"])
    current = {i["pid"] for i in shipyard.service("crashy")["instances"]}
    served = {json.loads(shipyard.get("crashy.localhost")[1])["pid"] for _ in range(8)}
    assert served == current and inst["pid"] in served  # the restarted instance is routed again


def test_pre_deploy_failure_cancels(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + web(
            "pre",
            "v1",
            extra="""\
    preDeployCommand: echo migrating > migrated.txt
""",
        )
    )
    deploy(shipyard, bp)
    project.blueprint(
        "services:\n"
        + web(
            "pre",
            "v2",
            extra="""\
    preDeployCommand: echo "migration 42 failed" && exit 1
""",
        )
    )
    result = shipyard.cli("deploy", "-f", str(bp), "--wait")
    assert result.code != 0 and "preDeployCommand exited with code 1" in result.text
    assert "migration 42 failed" in result.text
    assert shipyard.get_json("pre")["version"] == "v1"
    # a release whose migration failed can never be rolled out, not even explicitly
    refused = shipyard.cli("rollback", "pre", "--to", "2")
    assert refused.code == 5 and "never got past its build and pre-deploy" in refused.err


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_deploy_from_git_branch(shipyard: Shipyard, project: Project) -> None:
    project.blueprint("services:\n" + web("gitsvc", "from-git"))
    git(project.root, "init", "-q", "-b", "release")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "first")
    commit = git(project.root, "rev-parse", "HEAD")
    (project.root / "render.yaml").write_text("not: [valid")  # uncommitted: must not be used
    shipyard.ok("deploy", "--repo", str(project.root), "--branch", "release", "--wait")
    body = shipyard.get_json("gitsvc")
    assert body["version"] == "from-git" and body["commit"] == commit
    bad = shipyard.cli("deploy", "--repo", str(project.root), "--branch", "nope", "--wait")
    assert bad.code == 2 and "nope" in bad.err


def test_plan_shows_changes_without_deploying(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + web("pl", "v1")
        + """
  - type: cron
    name: nightly
    runtime: python
    schedule: "0 3 * * *"
    startCommand: python3 job.py
"""
    )
    out = shipyard.ok("plan", "-f", str(bp)).out
    assert "+ pl (web): create" in out
    assert "+ nightly (cron): create" in out  # cron jobs run now (issue 9)
    deploy(shipyard, bp)
    project.blueprint("services:\n" + web("pl", "v2", instances=3))
    plan = json.loads(shipyard.ok("plan", "-f", str(bp), "--json").out)
    step = plan["steps"][0]
    assert step["action"] == "update" and set(step["changes"]) == {
        "buildCommand",
        "envVars",
        "numInstances",
    }
    assert shipyard.get_json("pl")["version"] == "v1"  # plan changed nothing
    # a service dropped from the Blueprint is reported, and kept running
    extra = project.blueprint("services:\n" + web("pl", "v1") + web("pl2", "v1", instances=1))
    deploy(shipyard, extra)
    project.blueprint("services:\n" + web("pl", "v1"))
    assert (
        "pl2: no longer in the Blueprint (kept running)" in shipyard.ok("plan", "-f", str(bp)).out
    )
    assert shipyard.get_json("pl2")["version"] == "v1"


def test_invalid_blueprints_are_rejected_with_location(
    shipyard: Shipyard, project: Project
) -> None:
    before = shipyard.client().services()
    cases = {
        "startComand: python3 app.py": "Did you mean 'startCommand'?",
        "numInstances: lots": "numInstances",
        "healthCheckPath: healthz": "healthCheckPath",
    }
    for bad_line, expected in cases.items():
        bp = project.blueprint(
            f"""
services:
  - type: web
    name: broken
    runtime: python
    startCommand: python3 app.py
    {bad_line}
""".replace("    startCommand: python3 app.py\n    startComand", "    startComand")
        )
        result = shipyard.cli("deploy", "-f", str(bp), "--wait")
        assert result.code == 3, result.text
        assert "render.yaml:" in result.err and expected in result.err, result.err
    missing = shipyard.cli("deploy", "-f", str(project.root / "nope.yaml"))
    assert missing.code == 2 and "does not exist" in missing.err
    assert shipyard.client().services() == before  # nothing changed


def test_logs_show_requests_and_build(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("lg", "v1", instances=1))
    deploy(shipyard, bp)
    shipyard.get("lg.localhost", "/?marker=abc123")
    out = wait_for(lambda: (o := shipyard.ok("logs", "lg").out) and "abc123" in o and o)
    assert "[lg-r1-" in out
    assert "building lg v1" in shipyard.ok("logs", "lg", "--build").out
    ps = shipyard.ok("ps").out
    assert "lg" in ps and "INSTANCE" in ps


def test_app_that_ignores_port_is_routed_to_the_port_it_opened(
    shipyard: Shipyard, project: Project
) -> None:
    from tests.support.harness import free_port

    fixed = free_port()
    bp = project.blueprint(
        "services:\n"
        + web("fixedport", "v1", instances=1).replace(
            "startCommand: python3 app.py", f"startCommand: PORT={fixed} python3 app.py"
        )
    )
    out = deploy(shipyard, bp)
    assert f"listens on {fixed}" in out
    assert shipyard.get_json("fixedport")["port"] == fixed


def test_haproxy_killed_is_started_again(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("edgeheal", "v1", instances=1))
    deploy(shipyard, bp)
    pidfile = shipyard.home / "haproxy" / "haproxy.pid"
    master = int(pidfile.read_text().split()[0])
    workers = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    for pid in [master, *map(int, workers.stdout.split())]:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _serves(shipyard), timeout=20)
    assert int(pidfile.read_text().split()[0]) != master


def _serves(sy: Shipyard) -> bool:
    try:
        return sy.get("edgeheal.localhost")[0] == 200
    except OSError:
        return False
