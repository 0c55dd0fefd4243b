"""Secrets echoed by a build or pre-deploy command show masked in its log (as CI systems do),
through the real daemon and shipyard-logd; literal Blueprint values stay readable."""

from __future__ import annotations

from tests.support.harness import Project, Shipyard


def test_build_and_pre_deploy_logs_mask_secrets(shipyard: Shipyard, project: Project) -> None:
    url = "postgresql://app:pw-masked-0123456789@127.0.0.1:15400/app"
    bp = project.blueprint("""\
        services:
          - type: worker
            name: masked
            runtime: python
            rootDir: worker
            buildCommand: echo "key=$SECRET_KEY"; printf "%s\\n" "$DATABASE_URL"; echo "$MODE"
            preDeployCommand: echo "pre $SECRET_KEY"
            startCommand: python3 worker.py
            envVars:
              - key: SECRET_KEY
                generateValue: true
              - key: DATABASE_URL
                sync: false
              - key: MODE
                value: plain-literal
        """)  # fmt: skip
    shipyard.ok("env", "set", "masked", f"DATABASE_URL={url}", "--no-deploy")
    shipyard.ok("deploy", "-f", str(bp), "--wait")
    log = shipyard.ok("logs", "masked", "--build").out
    assert "key=********" in log and "pre ********" in log
    assert "\n" + "********" in log or " ********\n" in log  # the printf line
    assert "plain-literal" in log  # a Blueprint literal is not a secret
    assert "pw-masked-0123456789" not in log and "postgresql://" not in log
    files = list((shipyard.home / "services" / "masked" / "releases").rglob("current"))
    assert files
    for path in files:
        text = path.read_text()
        assert "pw-masked-0123456789" not in text
        assert "key=********" in text
