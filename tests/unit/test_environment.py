"""The environment of builds and instances (pure parts): built from scratch, in a fixed order."""

from __future__ import annotations

import os
from pathlib import Path

from shipyard.builds.environment import (
    Toolchain,
    compose_env,
    python_toolchain,
    release_toolchain,
    runtime_toolchain,
)
from shipyard.hostenv import PASSTHROUGH, SYSTEM_PATH, HostEnv

DAEMON_ENV = {
    "PATH": "/opt/shipyard/.venv/bin:/root/.nvm/bin:/usr/bin:/bin",
    "VIRTUAL_ENV": "/opt/shipyard/.venv",
    "SHIPYARD_HOME": "/var/lib/shipyard",
    "HOME": "/root",
    "PYTHONPATH": "/opt/shipyard/src",
    "SSL_CERT_FILE": "/etc/ca.pem",
    "HTTPS_PROXY": "http://proxy:3128",
    "https_proxy": "http://proxy:3128",
    "no_proxy": "localhost",
    "PIP_INDEX_URL": "http://mirror/simple",
    "USER": "deploy",
}


def host(**kwargs: object) -> HostEnv:
    return HostEnv.capture(DAEMON_ENV, own_prefixes=("/opt/shipyard/.venv",), **kwargs)  # type: ignore[arg-type]


def test_capture_keeps_only_ca_and_proxy_settings_and_drops_own_venv_from_the_search_path() -> None:
    captured = host()
    assert dict(captured.passthrough) == {
        "SSL_CERT_FILE": "/etc/ca.pem",
        "HTTPS_PROXY": "http://proxy:3128",
        "https_proxy": "http://proxy:3128",
        "no_proxy": "localhost",
    }
    assert captured.search_path == ("/root/.nvm/bin", "/usr/bin", "/bin")
    assert captured.user == "deploy"


def test_operator_may_pass_more_names() -> None:
    assert (
        host(extra_names=["PIP_INDEX_URL"]).passthrough["PIP_INDEX_URL"] == "http://mirror/simple"
    )


def test_passthrough_lists_both_cases_of_proxy_variables() -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        assert name in PASSTHROUGH and name.lower() in PASSTHROUGH
    assert "SSL_CERT_FILE" in PASSTHROUGH and "SSL_CERT_DIR" in PASSTHROUGH


def test_compose_builds_from_scratch_in_order(tmp_path: Path) -> None:
    env = compose_env(
        host=host(),
        home=tmp_path / "home",
        tmp=tmp_path / "tmp",
        toolchain=Toolchain(path=("/tc/bin",), env={"TOOL": "1", "LANG": "tool"}),
        service_env={"LANG": "de_DE.UTF-8", "RENDER": "user"},
        platform_env={"RENDER": "true", "PORT": "10000"},
    )
    assert env["PATH"] == ":".join(("/tc/bin", *SYSTEM_PATH))
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["LANG"] == "de_DE.UTF-8"  # the service's env wins over defaults and toolchain
    assert env["RENDER"] == "true"  # platform variables win over the service's env
    assert env["USER"] == env["LOGNAME"] == "deploy"
    for leaked in ("VIRTUAL_ENV", "SHIPYARD_HOME", "PYTHONPATH", "PIP_INDEX_URL"):
        assert leaked not in env
    assert "/opt/shipyard" not in "".join(env.values())


def test_python_release_runs_in_its_own_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert release_toolchain("python", venv, host()) == Toolchain()  # no venv: nothing to add
    venv.mkdir()
    toolchain = release_toolchain("python", venv, host())
    assert toolchain == python_toolchain(venv)
    assert toolchain.path == (str(venv / "bin"),) and toolchain.env["VIRTUAL_ENV"] == str(venv)


def test_runtime_tools_outside_the_system_path_join_path(tmp_path: Path) -> None:
    nvm = tmp_path / "nvm" / "bin"
    nvm.mkdir(parents=True)
    for tool in ("node", "npm"):
        (nvm / tool).write_text("#!/bin/sh\n")
        os.chmod(nvm / tool, 0o755)
    found = HostEnv(search_path=(str(nvm), *SYSTEM_PATH))
    assert runtime_toolchain("node", found).path == (str(nvm),)
    assert runtime_toolchain("go", HostEnv(search_path=(str(nvm),))).path == ()
