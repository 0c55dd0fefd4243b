"""Build toolchains as Render's native runtimes have them, through a real Shipyard: a Node version
asked for by NODE_VERSION or .nvmrc (installed from the npm registry), yarn 1 and pnpm from the
lockfile without either installed on the host, poetry and uv installing into the release's
virtualenv, PYTHON_VERSION choosing an interpreter of the host or failing the build clearly."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import APPS, Project, Shipyard

pytestmark = pytest.mark.integration

PINNED_NODE = "18.20.4"  # not the host's Node (20): installed from the npm registry


def toolchain_dir(factory: pytest.TempPathFactory) -> Path:
    """One toolchain directory for the whole session (Node downloads once), or the directory
    SHIPYARD_TEST_TOOLCHAIN_DIR names (to keep it across sessions)."""
    chosen = os.environ.get("SHIPYARD_TEST_TOOLCHAIN_DIR")
    path = Path(chosen) if chosen else factory.getbasetemp() / "toolchains"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def sy(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Shipyard]:
    tools = toolchain_dir(tmp_path_factory)
    shipyard = Shipyard(
        tmp_path_factory.mktemp("home"), extra_env={"SHIPYARD_TOOLCHAIN_DIR": str(tools)}
    )
    shipyard.up()
    try:
        yield shipyard
    finally:
        shipyard.down()


def project_with(root: Path, *apps: str) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    for app in apps:
        shutil.copytree(APPS / app, root / app)
    return Project(root)


def blueprint(project: Project, body: str) -> Path:
    return project.blueprint("services:\n" + textwrap.indent(textwrap.dedent(body), "  "))


def test_node_version_from_env_with_yarn_1(sy: Shipyard, tmp_path: Path) -> None:
    project = project_with(tmp_path / "repo", "yarnweb")
    bp = blueprint(
        project,
        f"""\
        - type: web
          name: yarny
          runtime: node
          rootDir: yarnweb
          buildCommand: yarn install --frozen-lockfile && node --version > built-with.txt
          startCommand: yarn start
          envVars:
            - key: NODE_VERSION
              value: "{PINNED_NODE}"
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    body = sy.get_json("yarny")
    assert body["node"] == f"v{PINNED_NODE}", body
    assert body["agent"].startswith("yarn/1."), body  # `yarn start` ran yarn 1
    assert body["ms"] == 172800000
    release = sy.home / "services" / "yarny" / "releases" / "1"
    assert body["dep"].startswith(str(release / "app")), body  # installed into the release
    assert (release / "app" / "yarnweb" / "built-with.txt").read_text().strip() == (
        f"v{PINNED_NODE}"
    )
    log = sy.ok("logs", "yarny", "--build").text
    assert f"Node {PINNED_NODE} (from NODE_VERSION" in log, log
    assert "yarn (from yarn.lock)" in log, log
    # installed once, under the toolchain directory
    node = sy.settings.toolchains_dir / "node" / PINNED_NODE / "bin" / "node"
    assert node.is_file()


def test_pnpm_app_with_nvmrc(sy: Shipyard, tmp_path: Path) -> None:
    project = project_with(tmp_path / "repo", "pnpmweb")
    (project.root / "pnpmweb" / ".nvmrc").write_text(f"v{PINNED_NODE}\n")
    bp = blueprint(
        project,
        """\
        - type: web
          name: pnpmy
          runtime: node
          rootDir: pnpmweb
          buildCommand: pnpm install --frozen-lockfile
          startCommand: pnpm start
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    body = sy.get_json("pnpmy")
    assert body["node"] == f"v{PINNED_NODE}", body
    assert body["agent"].startswith("pnpm/"), body
    assert body["ms"] == 172800000
    log = sy.ok("logs", "pnpmy", "--build").text
    assert "from .nvmrc" in log and "pnpm (from pnpm-lock.yaml)" in log, log


def test_node_without_a_version_uses_the_host_node(sy: Shipyard, tmp_path: Path) -> None:
    project = project_with(tmp_path / "repo", "npmweb")
    bp = blueprint(
        project,
        """\
        - type: web
          name: npmy
          runtime: node
          rootDir: npmweb
          buildCommand: npm ci
          startCommand: npm start
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    body = sy.get_json("npmy")
    host = shutil.which("node")
    assert host is not None
    assert body["node"].startswith("v20."), body
    assert body["agent"].startswith("npm/"), body


def test_poetry_installs_into_the_release_venv(sy: Shipyard, tmp_path: Path) -> None:
    project = project_with(tmp_path / "repo", "poetryweb")
    bp = blueprint(
        project,
        """\
        - type: web
          name: poet
          runtime: python
          rootDir: poetryweb
          buildCommand: poetry install --no-interaction
          startCommand: python app.py
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    body = sy.get_json("poet")
    venv = sy.home / "services" / "poet" / "releases" / "1" / "venv"
    assert body["dep"].startswith(str(venv)), body
    assert body["virtual_env"] == str(venv)
    # poetry made no virtualenv of its own
    assert not (project.root / "poetryweb" / ".venv").exists()
    assert not list((sy.home / "services" / "poet" / "releases" / "1" / "app").rglob(".venv"))


def test_uv_sync_into_the_release_venv_with_a_chosen_python(sy: Shipyard, tmp_path: Path) -> None:
    """PYTHON_VERSION=3.11.2 is /usr/bin/python3.11 (Shipyard itself runs on another 3.11)."""
    system = "/usr/bin/python3.11"
    if not Path(system).exists():
        pytest.skip("needs /usr/bin/python3.11")
    project = project_with(tmp_path / "repo", "uvweb")
    bp = blueprint(
        project,
        """\
        - type: web
          name: uvy
          runtime: python
          rootDir: uvweb
          buildCommand: uv sync --frozen && uv pip install --no-deps idna==3.10
          startCommand: python app.py
          envVars:
            - key: PYTHON_VERSION
              value: "3.11.2"
        """,
    )
    sy.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    body = sy.get_json("uvy")
    venv = sy.home / "services" / "uvy" / "releases" / "1" / "venv"
    assert body["dep"].startswith(str(venv)), body
    assert body["python"] == "3.11.2", body
    assert (venv / "bin" / "python").resolve() == Path(system).resolve()


def test_unknown_python_version_fails_the_build_clearly(sy: Shipyard, tmp_path: Path) -> None:
    project = project_with(tmp_path / "repo", "uvweb")
    (project.root / "uvweb" / ".python-version").write_text("3.99\n")
    bp = blueprint(
        project,
        """\
        - type: web
          name: py399
          runtime: python
          rootDir: uvweb
          buildCommand: echo never runs
          startCommand: python app.py
        """,
    )
    result = sy.cli("deploy", "-f", str(bp), "--wait")
    assert result.code == 10, result.text
    assert ".python-version asks for Python 3.99" in result.text, result.text
    assert "apt-get install python3.99" in result.text
    assert "PYTHON_VERSION" in result.text
