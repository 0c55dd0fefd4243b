"""Builds and instances run in environments built from scratch: a Python release builds into its
own virtualenv (never Shipyard's), services with conflicting pins both serve, a rollback runs
with its own release's packages, and nothing of the daemon's environment leaks in except the
documented CA and proxy settings."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Project, Shipyard
from tests.support.wheels import make_wheel

pytestmark = pytest.mark.integration

# A package Shipyard itself depends on: the builds below install other versions of it.
PINNED = "click"
SHIPYARD_VERSION = importlib.metadata.version(PINNED)

# Serves the version of the pinned package it imports, its own environment, and the
# environment its build saw.
APP = """\
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer
import click

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with open("build-env.json") as f:
            build = json.load(f)
        body = json.dumps({"version": click.__version__, "file": click.__file__,
                           "env": dict(os.environ), "build": build}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

PROXY_ENV = {
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "localhost,127.0.0.1",
    "SHIPYARD_SECRET_SETTING": "must-not-leak",
    "SOME_DAEMON_VAR": "must-not-leak",
}


@pytest.fixture(scope="module")
def sy(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Shipyard]:
    shipyard = Shipyard(tmp_path_factory.mktemp("home"), extra_env=PROXY_ENV)
    shipyard.up()
    try:
        yield shipyard
    finally:
        shipyard.down()


def service(name: str, version: str) -> str:
    return f"""\
  - type: web
    name: {name}
    runtime: python
    rootDir: {name}
    buildCommand: >-
      pip install --no-index --find-links ../wheels {PINNED}=={version} &&
      python -c "import json, os; json.dump(dict(os.environ), open('build-env.json', 'w'))"
    startCommand: python app.py
"""


def make_project(root: Path, *names: str) -> Project:
    project = Project.create(root)
    for version in ("0.1", "0.2", "0.3"):
        make_wheel(root / "wheels", PINNED, version)
    for name in names:
        (root / name).mkdir()
        (root / name / "app.py").write_text(APP)
    return project


def test_conflicting_pins_each_serve_their_own_version(sy: Shipyard, tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", "pina", "pinb")
    bp = project.blueprint("services:\n" + service("pina", "0.1") + service("pinb", "0.2"))
    sy.ok("deploy", "-f", str(bp), "--wait")
    a, b = sy.get_json("pina"), sy.get_json("pinb")
    assert (a["version"], b["version"]) == ("0.1", "0.2")
    # each imports from its own release's virtualenv, inside SHIPYARD_HOME
    for body, name in ((a, "pina"), (b, "pinb")):
        assert body["file"].startswith(str(sy.home / "services" / name / "releases")), body["file"]
    # Shipyard's own environment is untouched and the daemon keeps working
    assert importlib.metadata.version(PINNED) == SHIPYARD_VERSION
    with sy.client() as c:
        assert c.health().status == "ok"
    assert sy.ok("ps", "--json").out


def test_rollback_runs_with_the_old_release_packages(sy: Shipyard, tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", "pinr")
    bp = project.blueprint("services:\n" + service("pinr", "0.1"))
    sy.ok("deploy", "-f", str(bp), "--wait")
    project.blueprint("services:\n" + service("pinr", "0.3"))
    sy.ok("deploy", "-f", str(bp), "--wait")
    assert sy.get_json("pinr")["version"] == "0.3"
    sy.ok("rollback", "pinr")
    assert sy.get_json("pinr")["version"] == "0.1"


def test_builds_and_instances_get_a_clean_environment(sy: Shipyard, tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", "envy")
    bp = project.blueprint("services:\n" + service("envy", "0.2"))
    sy.ok("deploy", "-f", str(bp), "--wait")
    body = sy.get_json("envy")
    shipyard_bin = str(Path(sys.executable).parent)
    svc_dir = sy.home / "services" / "envy"
    for kind in ("env", "build"):
        env = body[kind]
        path = env["PATH"].split(":")
        assert shipyard_bin not in path and sys.prefix not in env["PATH"], (kind, env["PATH"])
        assert env["VIRTUAL_ENV"].startswith(str(svc_dir / "releases")), (kind, env)
        assert path[0] == env["VIRTUAL_ENV"] + "/bin"
        assert not [k for k in env if k.startswith("SHIPYARD_") and k != "SHIPYARD_RELEASE"]
        assert "SOME_DAEMON_VAR" not in env
        for key in ("SSL_CERT_FILE", "https_proxy", "NO_PROXY"):
            assert env[key] == PROXY_ENV[key], (kind, key)
        assert env["RENDER"] == "true" and env["RENDER_SERVICE_NAME"] == "envy"
    # builds and instances have separate HOME and TMPDIR directories of the service's own
    assert body["env"]["HOME"] == str(svc_dir / "home")
    assert body["build"]["HOME"] == str(svc_dir / "build-home")
    assert body["env"]["TMPDIR"] != body["build"]["TMPDIR"]
    assert body["build"]["CI"] == "true" and "PORT" not in body["build"]
    assert "SHIPYARD_RELEASE" not in body["env"] and body["env"]["PORT"]
    token = (sy.home / "token").read_text().strip()
    assert token not in json.dumps(body)
