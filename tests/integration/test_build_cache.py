"""The build cache and the build timeout, through a real Shipyard: package managers' caches
persist between builds of a service (a rebuild installs offline from them), clear_build_cache
empties them, and a build that outlives SHIPYARD_BUILD_TIMEOUT is killed with every process of
its group, with an error naming the limit and how to raise it."""

from __future__ import annotations

import shutil
import stat
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shipyard.builds.cache import clear_build_cache
from tests.integration.test_toolchains import toolchain_dir
from tests.support.harness import APPS, Project, Shipyard, wait_for

pytestmark = pytest.mark.integration

TIMEOUT_S = 3


@pytest.fixture(scope="module")
def sy(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Shipyard]:
    shipyard = Shipyard(
        tmp_path_factory.mktemp("home"),
        extra_env={"SHIPYARD_TOOLCHAIN_DIR": str(toolchain_dir(tmp_path_factory))},
    )
    shipyard.up()
    try:
        yield shipyard
    finally:
        shipyard.down()


@pytest.fixture
def impatient(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Shipyard]:
    """A Shipyard whose builds may take TIMEOUT_S seconds."""
    shipyard = Shipyard(
        tmp_path_factory.mktemp("home"),
        extra_env={
            "SHIPYARD_TOOLCHAIN_DIR": str(toolchain_dir(tmp_path_factory)),
            "SHIPYARD_BUILD_TIMEOUT": str(TIMEOUT_S),
        },
    )
    shipyard.up()
    try:
        yield shipyard
    finally:
        shipyard.down()


def project_with(root: Path, app: str, body: str) -> tuple[Project, Path]:
    root.mkdir(parents=True)
    shutil.copytree(APPS / app, root / app)
    project = Project(root)
    return project, project.blueprint("services:\n" + textwrap.indent(textwrap.dedent(body), "  "))


def build_log(release_dir: Path) -> str:
    files = sorted((release_dir / "build-log").iterdir())
    return "".join(p.read_text(errors="replace") for p in files if p.is_file())


def files_in(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def test_npm_and_pip_caches_persist_and_clear(sy: Shipyard, tmp_path: Path) -> None:
    # The first build fills the cache; the second installs with --offline, which succeeds only
    # if every package comes from the cache.
    _, bp = project_with(
        tmp_path / "repo",
        "npmweb",
        """\
        - type: web
          name: cachy
          runtime: node
          rootDir: npmweb
          buildCommand: npm ci --no-audit --no-fund
          startCommand: node server.js
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    cache = sy.home / "cache" / "cachy"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((sy.home / "cache").stat().st_mode) == 0o700
    assert files_in(cache / "npm") > 0
    # nothing in the build's HOME took the cache's place
    assert not (sy.home / "services" / "cachy" / "build-home" / ".npm").exists()

    bp.write_text(bp.read_text().replace("npm ci --no-audit", "npm ci --offline --no-audit"))
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    assert sy.get_json("cachy")["ms"] == 172800000

    assert clear_build_cache(sy.settings, "cachy") is True
    assert not cache.exists()
    assert clear_build_cache(sy.settings, "cachy") is False
    # offline without a cache: the install fails, and the live release keeps serving
    result = sy.cli("deploy", "-f", str(bp), "--wait", timeout=600)
    assert result.code == 10, result.text
    assert sy.get_json("cachy")["ms"] == 172800000


def test_pip_cache_is_the_service_cache(sy: Shipyard, tmp_path: Path) -> None:
    _, bp = project_with(
        tmp_path / "repo",
        "uvweb",
        """\
        - type: worker
          name: pipcache
          runtime: python
          rootDir: uvweb
          buildCommand: >-
            pip install idna==3.10 && uv pip install --no-deps six==1.16.0 &&
            pip cache dir > pip-cache.txt && poetry config cache-dir > poetry-cache.txt
          startCommand: sleep 600
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    cache = sy.home / "cache" / "pipcache"
    # pip caches HTTP responses only when the index sends cache headers (a mirror may not):
    # check where it caches; uv caches every wheel it installs.
    app = sy.home / "services" / "pipcache" / "releases" / "1" / "app" / "uvweb"
    assert (app / "pip-cache.txt").read_text().strip() == str(cache / "pip")
    assert (app / "poetry-cache.txt").read_text().strip() == str(cache / "poetry")
    assert files_in(cache / "uv") > 0
    venv = sy.home / "services" / "pipcache" / "releases" / "1" / "venv"
    assert list(venv.glob("lib/python3*/site-packages/idna"))
    assert list(venv.glob("lib/python3*/site-packages/six.py"))


def test_a_hung_build_is_killed_with_its_children(impatient: Shipyard, tmp_path: Path) -> None:
    sy = impatient
    marker = "1000.4242"  # a sleep nobody else runs
    _, bp = project_with(
        tmp_path / "repo",
        "npmweb",
        f"""\
        - type: web
          name: hung
          runtime: node
          rootDir: npmweb
          buildCommand: sleep {marker} & sleep {marker}
          startCommand: node server.js
        """,
    )
    started = time.monotonic()
    result = sy.cli("deploy", "-f", str(bp), "--wait", timeout=120)
    assert result.code == 10, result.text
    assert f"build command timed out after {TIMEOUT_S} s" in result.text, result.text
    assert "SHIPYARD_BUILD_TIMEOUT" in result.text
    assert time.monotonic() - started < 60

    def sleepers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if marker in (proc.info["cmdline"] or []):
                found.append(proc)
        return found

    wait_for(lambda: not sleepers(), timeout=10)  # the background child too


def test_unchanged_dependencies_start_from_the_previous_install(
    sy: Shipyard, tmp_path: Path
) -> None:
    project, bp = project_with(
        tmp_path / "repo",
        "uvweb",
        """\
        - type: worker
          name: seeded
          runtime: python
          rootDir: uvweb
          buildCommand: pip install -r requirements.txt
          startCommand: sleep 600
        """,
    )
    app = project.root / "uvweb"
    (app / "pyproject.toml").unlink()
    (app / "uv.lock").unlink()
    (app / "requirements.txt").write_text("idna==3.10\n")
    releases = sy.home / "services" / "seeded" / "releases"
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    (app / "app.py").write_text((app / "app.py").read_text() + "\n# a code change\n")
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    log = build_log(releases / "2")
    assert "dependencies unchanged since release 1" in log
    assert "Requirement already satisfied: idna==3.10" in log
    venv = releases / "2" / "venv"
    assert str(releases / "1") not in (venv / "pyvenv.cfg").read_text() + "".join(
        p.read_text(errors="replace") for p in (venv / "bin").iterdir() if p.is_file()
    )
    (app / "requirements.txt").write_text("idna==3.10\nsix==1.16.0\n")
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    log = build_log(releases / "3")
    assert "dependencies unchanged" not in log and "six" in log
    # "Clear build cache & deploy": nothing is reused, not even the previous virtualenv
    (app / "app.py").write_text((app / "app.py").read_text() + "\n# another change\n")
    sy.ok("deploy", "-f", str(bp), "--wait", "--clear-cache", timeout=600)
    log = build_log(releases / "4")
    assert "dependencies unchanged" not in log and "Collecting idna" in log
