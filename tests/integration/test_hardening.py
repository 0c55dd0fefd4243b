"""Hardening against a real daemon: private files, snapshots that cannot escape their source,
hostile input, port clashes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, load


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


def _second(tmp_path: Path, first: Shipyard, port_env: str) -> Shipyard:
    """Another Shipyard (its own home) told to use one of ``first``'s ports."""
    port = first.http_port if port_env == "SHIPYARD_HTTP_PORT" else first.api_port
    return Shipyard(tmp_path / "second-home", extra_env={port_env: str(port)})


@pytest.mark.parametrize("port_env", ["SHIPYARD_HTTP_PORT", "SHIPYARD_API_PORT"])
def test_a_second_shipyard_on_a_taken_port_is_refused(
    shipyard: Shipyard, project: Project, tmp_path: Path, port_env: str
) -> None:
    bp = project.blueprint("services:\n" + web("owner", "v1", instances=1))
    deploy(shipyard, bp)
    second = _second(tmp_path, shipyard, port_env)
    with load(shipyard.http_port, "owner.localhost") as result:
        attempt = second.cli("up", "-d", timeout=90)
        time.sleep(0.5)
    assert attempt.code == 5, attempt.text
    port = shipyard.http_port if port_env == "SHIPYARD_HTTP_PORT" else shipyard.api_port
    assert f"Port {port} ({port_env}" in attempt.err and "is in use by" in attempt.err
    holder = "haproxy" if port_env == "SHIPYARD_HTTP_PORT" else f"home {shipyard.home}"
    assert holder in attempt.err
    assert result.sent > 50 and result.failed == 0, result.errors[:5]
    # nothing of the second one is left running, the first one still answers as itself
    assert not psutil_processes_mentioning(str(second.home))
    assert shipyard.get_json("owner")["service"] == "owner"
    with shipyard.client() as c:
        assert c.health().home == str(shipyard.home)


def psutil_processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        home = (proc.info["environ"] or {}).get("SHIPYARD_HOME", "")
        if text in cmdline or home == text:
            found.append(f"{proc.pid}: {cmdline}")
    return found
