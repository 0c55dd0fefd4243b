"""Render's projects and environments against a real daemon: one Blueprint, two environments
of one service with their own env and hosts; `shipyard promote` rolls staging's exact build out
in production (no build) with production's env, and a rollback in production undoes it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.harness import Project, Shipyard


def _environment(name: str, greeting: str) -> str:
    return f"""
      - name: {name}
        services:
          - type: web
            name: api
            runtime: python
            rootDir: pyweb
            buildCommand: echo "building api for {name}"
            startCommand: python3 app.py
            healthCheckPath: /healthz
            maxShutdownDelaySeconds: 5
            envVars:
              - key: GREETING
                value: {greeting}
              - fromGroup: settings
        envVarGroups:
          - name: settings
            envVars:
              - key: TIER
                value: {name}-tier
"""


BLUEPRINT = (
    "projects:\n  - name: p\n    environments:"
    + _environment("staging", "hello-staging")
    + _environment("production", "hello-production")
)


def _built(home: Path) -> set[Path]:
    """Every release directory that holds a build (an app/ tree)."""
    return {p.parent for p in (home / "services").glob("*/releases/*/app")}


def test_environments_deploy_apart_and_promote_reuses_the_staging_build(
    shipyard: Shipyard, project: Project
) -> None:
    code = project.root / "pyweb" / "code.txt"
    code.write_text("code-1")
    bp = project.blueprint(BLUEPRINT)
    shipyard.ok("deploy", "-f", str(bp), "--wait")

    for env in ("staging", "production"):
        host = f"api-{env}.localhost"  # <service>-<environment>.localhost
        assert shipyard.get(host, "/env?key=GREETING") == (200, f"hello-{env}")
        assert shipyard.get(host, "/env?key=TIER") == (200, f"{env}-tier")  # its own group
        assert shipyard.get(host, "/file?path=code.txt") == (200, "code-1")
        assert shipyard.get(host, "/env?key=RENDER_SERVICE_NAME") == (200, f"api-{env}")
    listed = json.loads(shipyard.ok("ps", "--json").out)
    assert {(s["name"], s["environment"], s["base_name"]) for s in listed} == {
        ("api-staging", "staging", "api"),
        ("api-production", "production", "api"),
    }
    table = shipyard.ok("ps").out
    assert "ENVIRONMENT" in table and "production" in table

    # new code goes to staging only
    code.write_text("code-2")
    shipyard.ok("deploy", "-f", str(bp), "-s", "api-staging", "--wait")
    assert shipyard.get("api-staging.localhost", "/file?path=code.txt") == (200, "code-2")
    assert shipyard.get("api-production.localhost", "/file?path=code.txt") == (200, "code-1")

    with shipyard.client() as c:
        staging_before = c.releases("api-staging")
        production_before = c.releases("api-production")
    staging_live = next(r for r in staging_before if r.status == "live")
    assert staging_live.number == 2
    built_before = _built(shipyard.home)
    assert len(built_before) == 3  # two staging builds, one production build

    promoted = shipyard.ok(
        "promote", "api", "--from", "staging", "--to", "production", "--wait", "--json"
    )
    assert json.loads(promoted.out)["status"] == "succeeded"

    # production serves staging's code with production's env, and nothing was built
    assert shipyard.get("api-production.localhost", "/file?path=code.txt") == (200, "code-2")
    assert shipyard.get("api-production.localhost", "/env?key=GREETING") == (
        200, "hello-production",
    )  # fmt: skip
    assert shipyard.get("api-production.localhost", "/env?key=TIER") == (200, "production-tier")
    assert shipyard.get("api-production.localhost", "/env?key=RENDER_SERVICE_NAME") == (
        200, "api-production",
    )  # fmt: skip
    assert shipyard.get("api-staging.localhost", "/file?path=code.txt") == (200, "code-2")
    assert _built(shipyard.home) == built_before  # no new build anywhere
    with shipyard.client() as c:
        staging_after = c.releases("api-staging")
        production_after = c.releases("api-production")
    assert [r.number for r in staging_after] == [r.number for r in staging_before]
    assert len(production_after) == len(production_before) + 1
    new = max(production_after, key=lambda r: r.number)
    assert (new.number, new.status) == (2, "live")
    assert new.source == f"promoted from api-staging release {staging_live.number}"
    new_dir = shipyard.home / "services" / "api-production" / "releases" / str(new.number)
    assert not (new_dir / "app").exists()  # it runs staging's release 2 directory
    build_log = shipyard.cli("logs", "api-production", "--build", "--release", str(new.number))
    assert "building api" not in build_log.out  # no build ran for it
    assert (
        "building api for staging"
        in shipyard.ok("logs", "api-staging", "--build", "--release", "2").out
    )

    # a rollback in production restores its own previous release
    shipyard.ok("rollback", "api-production", "--wait")
    assert shipyard.get("api-production.localhost", "/file?path=code.txt") == (200, "code-1")
    assert shipyard.get("api-production.localhost", "/env?key=GREETING") == (
        200, "hello-production",
    )  # fmt: skip
    assert shipyard.get("api-staging.localhost", "/file?path=code.txt") == (200, "code-2")

    unknown = shipyard.cli("promote", "api", "--from", "staging", "--to", "qa")
    assert unknown.code == 4, unknown.text  # NotFound
    assert "no environment 'qa'; it is in: production, staging" in unknown.err
