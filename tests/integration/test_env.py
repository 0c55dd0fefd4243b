"""`shipyard env` against a real daemon: sync: false keys supplied before the first deploy,
values rolled out as a new release of the same build, a rollback restoring the old env."""

from __future__ import annotations

import json

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard


def test_env_set_supplies_sync_false_keys_and_rolls_out_without_a_rebuild(
    shipyard: Shipyard, project: Project
) -> None:
    bp = project.blueprint(
        "services:\n" + web("configured", "v1", instances=1, extra_env="""\
      - key: STRIPE_KEY
        sync: false
      - key: SESSION_SECRET
        generateValue: true
""")
    )  # fmt: skip
    refused = shipyard.cli("deploy", "-f", str(bp), "--wait")
    assert refused.code == 2, refused.text
    assert "STRIPE_KEY is sync: false and has no value" in refused.err
    assert "shipyard env set configured STRIPE_KEY=VALUE" in refused.err
    shipyard.ok("env", "set", "configured", "STRIPE_KEY=sk_first", "--no-deploy")
    deploy(shipyard, bp)
    status, body = shipyard.get("configured.localhost", "/env?key=STRIPE_KEY")
    assert (status, body) == (200, "sk_first")
    listed = json.loads(shipyard.ok("env", "list", "configured", "--json").out)
    entry = next(e for e in listed["entries"] if e["key"] == "STRIPE_KEY")
    assert entry == {"key": "STRIPE_KEY", "source": "set", "value": "****"}
    builds = shipyard.home / "services" / "configured" / "releases"
    shipyard.ok("env", "set", "configured", "STRIPE_KEY=sk_second", "EXTRA=1", "--wait")
    assert shipyard.get("configured.localhost", "/env?key=STRIPE_KEY") == (200, "sk_second")
    assert shipyard.get("configured.localhost", "/env?key=EXTRA") == (200, "1")
    with shipyard.client() as c:
        releases = c.releases("configured")
    assert [r.number for r in releases if r.status == "live"] == [2]
    assert not (builds / "2" / "app").exists()  # release 2 runs release 1's build
    shipyard.ok("rollback", "configured", "--wait")
    assert shipyard.get("configured.localhost", "/env?key=STRIPE_KEY") == (200, "sk_first")
    rotated = shipyard.ok("secrets", "rotate-key").out
    assert "re-encrypted" in rotated
    revealed = json.loads(shipyard.ok("env", "list", "configured", "--reveal", "--json").out)
    assert {"key": "STRIPE_KEY", "source": "set", "value": "sk_second"} in revealed["entries"]
    shipyard.ok("rollback", "configured", "--to", "2", "--wait")  # an env snapshot, re-encrypted
    assert shipyard.get("configured.localhost", "/env?key=STRIPE_KEY") == (200, "sk_second")
    before = shipyard.get("configured.localhost", "/env?key=SESSION_SECRET")[1]
    shipyard.ok("env", "rotate", "configured", "SESSION_SECRET", "--wait")
    after = shipyard.get("configured.localhost", "/env?key=SESSION_SECRET")[1]
    assert after != before and len(after) == 44  # base64 of 256 random bits, like Render
    deploy(shipyard, bp)  # a Blueprint deploy keeps the rotated value
    assert shipyard.get("configured.localhost", "/env?key=SESSION_SECRET")[1] == after
    wrong = shipyard.cli("env", "rotate", "configured", "STRIPE_KEY")
    assert wrong.code == 2 and "not a generateValue variable" in wrong.err
    fixed = shipyard.cli("env", "set", "configured", "VERSION=v9")
    assert fixed.code == 2 and "set by its Blueprint" in fixed.err
    for path in shipyard.home.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert b"sk_second" not in path.read_bytes(), path  # encrypted at rest
