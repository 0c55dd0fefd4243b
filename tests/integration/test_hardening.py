"""Hardening against a real daemon: private files, snapshots that cannot escape their source,
hostile input, port clashes."""

from __future__ import annotations

import subprocess

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard


def test_home_is_private_after_a_deploy(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("private", "v1", instances=1))
    deploy(shipyard, bp)
    # Symlinks are left out: their mode is always 0777 and means nothing on Linux.
    found = subprocess.run(
        ["find", str(shipyard.home), "!", "-type", "l", "-perm", "/o=rwx,g=rwx"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert found == "", f"readable by others:\n{found[:2000]}"
    assert (shipyard.home.stat().st_mode & 0o777) == 0o700


def test_root_dir_through_a_link_out_of_the_tree_is_refused(
    shipyard: Shipyard, project: Project
) -> None:
    live = project.root.parent / "live-pyweb"
    subprocess.run(["cp", "-r", str(project.root / "pyweb"), str(live)], check=True)
    (project.root / "linked").symlink_to(live, target_is_directory=True)
    text = web("linked", "v1", instances=1).replace("rootDir: pyweb", "rootDir: linked")
    bp = project.blueprint("services:\n" + text)
    result = shipyard.cli("deploy", "-f", str(bp), "--wait")
    assert result.code == 10, result.text
    assert "linked is a symlink to" in result.err and "outside the source tree" in result.err
