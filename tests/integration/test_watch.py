"""Watched branches and Blueprint ownership against a real daemon: a service deployed from a
repository's branch deploys each new commit (polling), a skip marker and
`autoDeployTrigger: off` hold it back, a burst of commits deploys only the newest one after
the deploy under way (queueing); a Blueprint that would take over another's service needs
--adopt, and --prune removes what a Blueprint no longer lists."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_deploy import web
from tests.integration.test_git_push import commit, git, version
from tests.support.harness import Project, Shipyard, wait_for


@pytest.fixture
def watching(tmp_path: Path, haproxy_bin: str) -> Iterator[Shipyard]:
    sy = Shipyard(tmp_path / "home", {"SHIPYARD_POLL_INTERVAL_S": "0.5"})
    sy.up()
    try:
        yield sy
    finally:
        sy.down()


def built_commits(sy: Shipyard, service: str) -> list[str]:
    with sy.client() as c:
        return [r.git_commit for r in sorted(c.releases(service), key=lambda r: r.number)]


def test_a_watched_branch_deploys_new_commits_and_queues_the_newest(
    watching: Shipyard, project: Project
) -> None:
    sy, root = watching, project.root
    bp = (
        "services:\n"
        + web("watched", "v1", instances=1)
        + web("manual", "m1", instances=1, extra="    autoDeployTrigger: 'off'\n")
    )
    project.blueprint(bp)
    git(root, "init", "-q", "-b", "main")
    commit(root, "v1")
    sy.ok("deploy", "--repo", str(root), "--branch", "main", "--wait")
    assert version(sy, "watched") == "v1"

    project.blueprint(bp.replace("value: v1", "value: v2", 1))
    second = commit(root, "v2")
    wait_for(lambda: version(sy, "watched") == "v2", timeout=120)
    assert built_commits(sy, "watched")[-1] == second
    assert len(built_commits(sy, "manual")) == 1  # autoDeployTrigger: off

    (root / "pyweb" / "notes.txt").write_text("a code change\n")
    commit(root, "wip [skip render]")
    time.sleep(3)  # several polls
    assert version(sy, "watched") == "v2" and built_commits(sy, "watched")[-1] == second

    slow = bp.replace('echo "building watched', 'sleep 4; echo "building watched')
    project.blueprint(slow.replace("value: v1", "value: v4", 1))
    commit(root, "v4")
    wait_for(lambda: len(built_commits(sy, "watched")) == 3, timeout=60)  # v4 is building
    project.blueprint(slow.replace("value: v1", "value: v5", 1))
    fifth = commit(root, "v5")
    project.blueprint(slow.replace("value: v1", "value: v6", 1))
    sixth = commit(root, "v6")
    wait_for(lambda: version(sy, "watched") == "v6", timeout=180)
    commits = built_commits(sy, "watched")
    assert commits[-1] == sixth and fifth not in commits  # v5 was replaced while queued


def test_takeover_needs_adopt_and_prune_removes_what_is_no_longer_listed(
    shipyard: Shipyard, tmp_path: Path
) -> None:
    a = Project.create(tmp_path / "a")
    b = Project.create(tmp_path / "b")
    a_bp = a.blueprint("services:\n" + web("owned", "a1", instances=1)
                       + web("extra", "a1", instances=1))  # fmt: skip
    shipyard.ok("deploy", "-f", str(a_bp), "--wait")
    b_bp = b.blueprint("services:\n" + web("owned", "b1", instances=1))
    planned = shipyard.cli("plan", "-f", str(b_bp))
    assert "belongs to another Blueprint" in planned.text and "--adopt" in planned.text
    refused = shipyard.cli("deploy", "-f", str(b_bp), "--wait")
    assert refused.code == 2 and "--adopt" in refused.err
    assert version(shipyard, "owned") == "a1"
    shipyard.ok("deploy", "-f", str(b_bp), "--wait", "--adopt")
    assert version(shipyard, "owned") == "b1"

    a_bp = a.blueprint("services:\n" + web("kept", "a2", instances=1))
    listed = json.loads(shipyard.ok("deploy", "-f", str(a_bp), "--wait", "--json").out)
    assert listed["status"] == "succeeded"
    assert version(shipyard, "extra") == "a1"  # an orphan: reported, kept running
    shipyard.ok("deploy", "-f", str(a_bp), "--wait", "--prune")
    with shipyard.client() as c:
        names = {s.name for s in c.services()}
    assert "extra" not in names and {"owned", "kept"} <= names  # b's service is b's
    assert shipyard.get("extra.localhost", "/")[0] in (404, 503)
    assert version(shipyard, "owned") == "b1"
