"""Hardening against a real daemon: private files, snapshots that cannot escape their source,
hostile input, port clashes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from shipyard.errors import ShipyardError
from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, load


def test_home_is_private_after_a_deploy(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("private", "v1", instances=1))
    deploy(shipyard, bp)
    # Symlinks are left out: their mode is always 0777 and means nothing on Linux.
    # The home, its data and backups directories are traversable (0711) so a datastore's
    # account reaches its own directory; nothing in them is readable or listable by others.
    found = subprocess.run(
        ["find", str(shipyard.home), "!", "-type", "l", "-perm", "/o=rwx,g=rwx",
         "!", "-path", str(shipyard.home), "!", "-path", str(shipyard.home / "data"),
         "!", "-path", str(shipyard.home / "backups")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert found == "", f"readable by others:\n{found[:2000]}"
    assert (shipyard.home.stat().st_mode & 0o777) == 0o711
    assert (shipyard.home / "data").stat().st_mode & 0o777 == 0o711
    assert (shipyard.home / "backups").stat().st_mode & 0o777 == 0o711


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
    deploy(shipyard, bp, "--adopt")  # each parameter's project takes over the last one's
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


LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE = {
    "billion laughs": LAUGHS,
    "10,000 nested brackets": "services: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "NUL in env": "services:\n  - {type: worker, name: w, runtime: python, startCommand: x,"
    ' envVars: [{key: A, value: "a\\0b"}]}\n',
    "empty startCommand": "services:\n  - {type: worker, name: w, runtime: python,"
    ' startCommand: ""}\n',
    "wildcard domain": "services:\n  - {type: web, name: w, runtime: python, startCommand: x,"
    " domains: ['*.example.com']}\n",
}


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_hostile_blueprints_are_refused_fast_and_change_nothing(
    shipyard: Shipyard, tmp_path: Path
) -> None:
    rss_before = _rss(shipyard.daemon_pid())
    for what, text in {**HOSTILE, "a 20 MB file": "services: []\n" + "#" * (20 << 20)}.items():
        bp = tmp_path / what.replace(" ", "-") / "render.yaml"
        bp.parent.mkdir()
        bp.write_text(text)
        for command in ("plan", "deploy"):
            t0 = time.monotonic()
            result = shipyard.cli(command, "-f", str(bp))  # refused by the CLI itself
            assert result.code in (2, 3), f"{what}: {result.text}"
            assert time.monotonic() - t0 < 5  # a whole CLI process; the check itself: < 1 s
        with shipyard.client() as c:  # ... and by the daemon, sent as content and as a path
            for send in (c.plan, c.deploy):
                t0 = time.monotonic()
                with pytest.raises(ShipyardError) as err:
                    send(str(bp))
                assert time.monotonic() - t0 < 1, what
                assert err.value.code in ("blueprint_invalid", "limit_exceeded"), what
    token = shipyard.settings.token_path.read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    base = shipyard.settings.api_url
    for text in HOSTILE.values():
        t0 = time.monotonic()
        answer = httpx.post(f"{base}/v1/plan", json={"blueprint_text": text}, headers=auth)
        assert answer.status_code in (413, 422) and time.monotonic() - t0 < 1, answer.text
    big = httpx.post(f"{base}/v1/plan", json={"blueprint_text": "#" * (9 << 20)}, headers=auth)
    assert big.status_code == 413 and "SHIPYARD_API_MAX_BODY_BYTES" in big.json()["msg"]
    assert _rss(shipyard.daemon_pid()) < rss_before + 30_000_000  # nothing was expanded
    assert httpx.get(f"{base}/v1/services", headers=auth).status_code == 200  # still fine


def test_the_api_reads_no_file_that_is_not_a_blueprint(shipyard: Shipyard, tmp_path: Path) -> None:
    token = shipyard.settings.token_path.read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    base = shipyard.settings.api_url
    for path in ("/etc/shadow", "/etc/passwd", str(shipyard.home / "token")):
        answer = httpx.post(f"{base}/v1/plan", json={"blueprint": path}, headers=auth)
        assert answer.status_code == 400 and "outside the directories" in answer.json()["msg"]
    secret = tmp_path / "render.yaml"  # an allowed place, but not a Blueprint
    secret.write_text("root:$6$saltsalt$hash:19000:0:99999:7:::\ndaemon:*:19000::::::\n")
    answer = httpx.post(f"{base}/v1/plan", json={"blueprint": str(secret)}, headers=auth)
    assert answer.status_code == 422
    for word in ("root", "saltsalt", "daemon", "19000"):
        assert word not in answer.text, answer.text


def test_a_failed_first_deploy_is_shown_failed_and_a_fixed_one_works(
    shipyard: Shipyard, project: Project
) -> None:
    broken = web("fresh", "v1", instances=1).replace(
        'buildCommand: echo "building fresh v1"', 'buildCommand: echo "missing-dep-xyz"; exit 4'
    )
    bp = project.blueprint("services:\n" + broken)
    assert shipyard.cli("deploy", "-f", str(bp), "--wait").code == 10
    view = shipyard.service("fresh")
    assert (view["status"], view["never_served"]) == ("failed", True)
    assert "build command exited with code 4" in view["last_failure"]
    ps = shipyard.ok("ps").out
    assert "failed, never served" in ps and "shipyard logs fresh --build" in ps
    assert "missing-dep-xyz" in shipyard.ok("logs", "fresh", "--build").out
    deploy(shipyard, project.blueprint("services:\n" + web("fresh", "v1", instances=1)))
    view = shipyard.service("fresh")
    assert (view["status"], view["never_served"], view["last_failure"]) == ("live", False, None)
