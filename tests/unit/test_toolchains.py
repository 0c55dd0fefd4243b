"""Choosing toolchains (pure logic): npm ranges, Node version requests and aliases, package
managers from lockfiles, Python interpreters, the build cache's variables and removal, and the
toolchain a release records."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from shipyard.builds.cache import cache_env, clear_build_cache, ensure_service_cache
from shipyard.builds.environment import (
    RECORD,
    Toolchain,
    compose_env,
    load_record,
    release_toolchain,
)
from shipyard.builds.node import (
    NodeRequest,
    PackageManager,
    detect_package_manager,
    newest_compatible,
    node_request,
    resolve_node,
)
from shipyard.builds.python import (
    Interpreter,
    PythonRequest,
    choose_interpreter,
    python_env,
    python_request,
)
from shipyard.builds.semver import RangeError, parse_range, parse_version, satisfies
from shipyard.builds.toolchain import save_record
from shipyard.errors import BuildFailed, UsageError
from shipyard.hostenv import HostEnv
from shipyard.settings import Settings

V = parse_version

PUBLISHED = [
    V(t)
    for t in (
        "16.20.2", "18.0.0", "18.19.1", "18.20.4", "18.20.8", "19.9.0", "20.0.0", "20.1.0",
        "20.11.1", "20.20.2", "21.7.3", "22.11.0", "22.22.2", "23.11.1", "24.0.0", "24.22.3",
        "25.9.0", "26.12.1",
    )
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "version", "ok"),
    [
        ("18", "18.20.4", True),
        ("18", "19.0.0", False),
        ("18.x", "18.0.0", True),
        ("18.20", "18.20.9", True),
        ("18.20", "18.21.0", False),
        ("v18.20.4", "18.20.4", True),
        ("=18.20.4", "18.20.5", False),
        (">=18", "26.0.0", True),
        (">=18", "16.20.2", False),
        (">= 18 <21", "20.99.0", True),
        (">=18 <21", "21.0.0", False),
        ("^20.1", "20.1.0", True),
        ("^20.1", "20.0.9", False),
        ("^20.1", "21.0.0", False),
        ("^0.3.1", "0.3.9", True),
        ("^0.3.1", "0.4.0", False),
        ("~18.19", "18.19.1", True),
        ("~18.19", "18.20.0", False),
        ("18 - 20", "20.5.0", True),
        ("18 - 20", "21.0.0", False),
        ("18.1 - 20.1", "20.1.9", True),
        (">20", "20.9.0", False),
        (">20", "21.0.0", True),
        ("<=20", "20.9.0", True),
        ("<20", "20.0.0", False),
        ("*", "1.2.3", True),
        ("", "1.2.3", True),
        ("^18.17.0 || >=20.5.0", "20.4.0", False),
        ("^18.17.0 || >=20.5.0", "18.20.4", True),
        ("^18.17.0 || >=20.5.0", "24.0.0", True),
    ],
)
def test_npm_ranges(text: str, version: str, ok: bool) -> None:
    parsed = V(version)
    assert parsed is not None
    assert satisfies(parsed, text) is ok


def test_bad_ranges() -> None:
    with pytest.raises(RangeError):
        parse_range("eighteen")
    assert satisfies((18, 0, 0), "not a range") is False
    assert parse_version("18.0.0-rc.1") is None


@pytest.mark.parametrize(
    ("spec", "chosen"),
    [
        ("18", "18.20.8"),
        ("18.20.4", "18.20.4"),
        (">=18", "26.12.1"),
        ("18.x", "18.20.8"),
        ("^20.1", "20.20.2"),
        ("~20.1", "20.1.0"),
        # 25 is out, so 24 is LTS; 26 is not yet (27 is not out)
        ("lts/*", "24.22.3"),
        ("LTS/*", "24.22.3"),
        ("lts/-1", "22.22.2"),
        ("lts/iron", "20.20.2"),
        ("lts/hydrogen", "18.20.8"),
        ("node", "26.12.1"),
        ("latest", "26.12.1"),
        ("15", None),
    ],
)
def test_resolve_node(spec: str, chosen: str | None) -> None:
    assert resolve_node(spec, [v for v in PUBLISHED if v]) == (V(chosen) if chosen else None)


def test_unknown_lts_codename() -> None:
    with pytest.raises(RangeError):
        resolve_node("lts/nonesuch", [v for v in PUBLISHED if v])


def test_node_request_precedence(tmp_path: Path) -> None:
    assert node_request({}, tmp_path) is None
    (tmp_path / "package.json").write_text(json.dumps({"engines": {"node": ">=18 <21"}}))
    assert node_request({}, tmp_path) == NodeRequest(">=18 <21", "package.json engines.node")
    (tmp_path / ".nvmrc").write_text("# comment\n\nlts/iron  # trailing\n")
    assert node_request({}, tmp_path) == NodeRequest("lts/iron", ".nvmrc")
    (tmp_path / ".node-version").write_text("v18.20.4\n")
    assert node_request({}, tmp_path) == NodeRequest("v18.20.4", ".node-version")
    assert node_request({"NODE_VERSION": " 20 "}, tmp_path) == NodeRequest("20", "NODE_VERSION")


def test_node_request_ignores_broken_package_json(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("{not json")
    assert node_request({}, tmp_path) is None
    (tmp_path / "package.json").write_text(json.dumps({"engines": {"node": ""}}))
    assert node_request({}, tmp_path) is None


PNPM = "pnpm-lock.yaml"


def pm_of(tmp_path: Path, files: dict[str, str]) -> PackageManager:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return detect_package_manager(tmp_path)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, PackageManager("npm", "", "default")),
        ({"package-lock.json": "{}"}, PackageManager("npm", "", "package-lock.json")),
        ({"yarn.lock": "# yarn lockfile v1\n"}, PackageManager("yarn", "", "yarn.lock")),
        (
            {"yarn.lock": '__metadata:\n  version: 8\n'},
            PackageManager("yarn", "", "yarn.lock", berry=True),
        ),
        (
            {"yarn.lock": "# yarn lockfile v1\n", ".yarnrc.yml": "nodeLinker: node-modules\n"},
            PackageManager("yarn", "", "yarn.lock", berry=True),
        ),
        ({PNPM: "lockfileVersion: '9.0'\n"}, PackageManager("pnpm", "", PNPM)),
        ({PNPM: "lockfileVersion: '6.0'\n"}, PackageManager("pnpm", "8", PNPM)),
        ({PNPM: "lockfileVersion: 5.4\n"}, PackageManager("pnpm", "7", PNPM)),
        ({"bun.lockb": ""}, PackageManager("bun", "", "bun.lockb")),
        ({"bun.lock": "{}", "package-lock.json": "{}"}, PackageManager("bun", "", "bun.lock")),
        (
            {"package.json": json.dumps({"packageManager": "yarn@4.5.0+sha512.abc"}),
             "package-lock.json": "{}"},
            PackageManager("yarn", "4.5.0+sha512.abc", "package.json packageManager", True),
        ),
        (
            {"package.json": json.dumps({"packageManager": "pnpm@9.1.0"})},
            PackageManager("pnpm", "9.1.0", "package.json packageManager"),
        ),
        (
            {"package.json": json.dumps({"packageManager": "yarn@1.22.22"})},
            PackageManager("yarn", "1.22.22", "package.json packageManager"),
        ),
        # an unknown manager in packageManager: the lockfile decides
        (
            {"package.json": json.dumps({"packageManager": "deno@2"}), "yarn.lock": ""},
            PackageManager("yarn", "", "yarn.lock"),
        ),
    ],
)  # fmt: skip
def test_package_manager_from_lockfiles(
    tmp_path: Path, files: dict[str, str], expected: PackageManager
) -> None:
    assert pm_of(tmp_path, files) == expected


def test_newest_compatible_npm() -> None:
    metadata = {
        "10.7.0": {"engines": {"node": "^18.17.0 || >=20.5.0"}},
        "10.9.9": {"engines": {"node": "^18.17.0 || >=20.5.0"}},
        "11.6.0": {"engines": {"node": "^20.17.0 || >=22.9.0"}},
        "12.0.0-pre": {"engines": {"node": ">=18"}},
        "9.0.0": {},
    }
    assert newest_compatible(metadata, (18, 20, 4)) == "10.9.9"
    assert newest_compatible(metadata, (22, 11, 0)) == "11.6.0"
    assert newest_compatible(metadata, (16, 0, 0)) is None


def test_python_request(tmp_path: Path) -> None:
    assert python_request({}, tmp_path) is None
    (tmp_path / ".python-version").write_text("3.12.1\n")
    assert python_request({}, tmp_path) == PythonRequest("3.12.1", ".python-version")
    assert python_request({"PYTHON_VERSION": "3.11"}, tmp_path) == PythonRequest(
        "3.11", "PYTHON_VERSION"
    )
    with pytest.raises(BuildFailed, match="Expected a Python version"):
        python_request({"PYTHON_VERSION": "pypy-ish"}, tmp_path)


SYSTEM = Interpreter("/usr/bin/python3.11", (3, 11, 2))
OWN = Interpreter("/opt/py/bin/python3.11", (3, 11, 7))
P312 = Interpreter("/usr/local/bin/python3.12", (3, 12, 4))


@pytest.mark.parametrize(
    ("spec", "chosen", "noted"),
    [
        (None, OWN, False),  # no request: the default interpreter
        ("3.11", OWN, False),  # the default wins among equals
        ("3.11.2", SYSTEM, False),  # an exact patch release
        ("3.12", P312, False),
        ("3", OWN, False),
        ("3.12.9", P312, True),  # same X.Y, another patch: used, with a note
    ],
)
def test_choose_interpreter(spec: str | None, chosen: Interpreter, noted: bool) -> None:
    request = PythonRequest(spec, "PYTHON_VERSION") if spec else None
    interpreter, note = choose_interpreter(request, OWN, [SYSTEM, OWN, P312])
    assert interpreter == chosen
    assert bool(note) is noted


def test_missing_python_names_the_version_and_the_fix() -> None:
    with pytest.raises(BuildFailed) as err:
        choose_interpreter(PythonRequest("3.99", "PYTHON_VERSION"), OWN, [SYSTEM])
    message = err.value.message
    assert "PYTHON_VERSION asks for Python 3.99" in message
    assert "apt-get install python3.99" in message
    assert "3.11.2 (/usr/bin/python3.11)" in message and "3.11.7" in message


def test_python_env_points_every_installer_at_the_release_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = python_env(venv)
    assert env["VIRTUAL_ENV"] == env["UV_PROJECT_ENVIRONMENT"] == str(venv)
    assert env["POETRY_VIRTUALENVS_CREATE"] == "false"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


def test_cache_env_and_compose_order(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "web"
    env = cache_env(cache)
    assert env["npm_config_cache"] == str(cache / "npm")
    assert env["YARN_CACHE_FOLDER"] == str(cache / "yarn")
    assert env["YARN_GLOBAL_FOLDER"] == str(cache / "yarn-berry")
    assert env["YARN_ENABLE_GLOBAL_CACHE"] == "true"
    assert env["npm_config_store_dir"] == str(cache / "pnpm-store")
    assert env["PIP_CACHE_DIR"] == str(cache / "pip")
    assert env["UV_CACHE_DIR"] == str(cache / "uv")
    assert env["POETRY_CACHE_DIR"] == str(cache / "poetry")
    composed = compose_env(
        host=HostEnv(),
        home=tmp_path / "h",
        tmp=tmp_path / "t",
        toolchain=Toolchain(path=("/tc/bin",), env={"COREPACK_HOME": "/tc/cp"}),
        build_env=env,
        service_env={"PIP_CACHE_DIR": "/mine"},  # the service may override the cache
        platform_env={"RENDER": "true"},
    )
    assert composed["PATH"].startswith("/tc/bin:")
    assert composed["PIP_CACHE_DIR"] == "/mine"
    assert composed["npm_config_cache"] == str(cache / "npm")
    assert composed["COREPACK_HOME"] == "/tc/cp"


def test_clear_build_cache(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert clear_build_cache(settings, "web") is False
    cache = ensure_service_cache(settings, "web")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (cache / "npm" / "_cacache").mkdir(parents=True)
    (cache / "npm" / "_cacache" / "blob").write_text("x")
    other = ensure_service_cache(settings, "api")
    assert clear_build_cache(settings, "web") is True
    assert not cache.exists() and other.is_dir()
    assert list((tmp_path / "cache").iterdir()) == [other]
    with pytest.raises(ValueError):
        clear_build_cache(settings, "../x")


def test_release_toolchain_is_the_recorded_one(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "3"
    release.mkdir(parents=True)
    assert load_record(release) is None
    chosen = Toolchain(path=("/tc/node/18.20.4/bin",), env={"COREPACK_HOME": "/tc/cp"})
    save_record(release, chosen)
    assert stat.S_IMODE((release / RECORD).stat().st_mode) == 0o600
    assert release_toolchain("node", release / "venv", HostEnv()) == chosen
    (release / RECORD).write_text("[]")
    assert load_record(release) is None


def test_settings_for_builds(tmp_path: Path) -> None:
    env = {"SHIPYARD_HOME": str(tmp_path)}
    settings = Settings.from_env(env)
    assert settings.build_timeout_s == 1800.0
    assert settings.toolchains_dir == tmp_path / "toolchains"
    assert settings.npm_registry == "https://registry.npmjs.org"
    settings = Settings.from_env(
        {**env, "SHIPYARD_BUILD_TIMEOUT": "90", "SHIPYARD_TOOLCHAIN_DIR": "/srv/tc",
         "SHIPYARD_NPM_REGISTRY": "https://npm.example.com"}
    )  # fmt: skip
    assert settings.build_timeout_s == 90.0
    assert settings.toolchains_dir == Path("/srv/tc")
    assert settings.npm_registry == "https://npm.example.com"
    with pytest.raises(UsageError, match="SHIPYARD_BUILD_TIMEOUT"):
        Settings.from_env({**env, "SHIPYARD_BUILD_TIMEOUT": "soon"})
    with pytest.raises(UsageError, match="SHIPYARD_TOOLCHAIN_DIR"):
        Settings.from_env({**env, "SHIPYARD_TOOLCHAIN_DIR": "relative/dir"})


def test_offline_registry_falls_back_to_installed_nodes(tmp_path: Path) -> None:
    """A registry that does not answer: an exact installed version needs none, a range is
    resolved among the installed versions, and nothing installed is a clear BuildFailed."""
    from shipyard.builds.node import NodeToolchains
    from shipyard.builds.npmreg import Registry

    dead = Registry("http://127.0.0.1:9", tmp_path / "meta")  # nothing listens on port 9
    tools = NodeToolchains(tmp_path, dead, ())
    notes: list[str] = []
    with pytest.raises(BuildFailed, match="SHIPYARD_NPM_REGISTRY"):
        tools.resolve(NodeRequest("18", "NODE_VERSION"), notes.append)
    for version in ("18.20.4", "20.1.0"):
        node = tmp_path / "node" / version / "bin" / "node"
        node.parent.mkdir(parents=True)
        node.write_text("")
    assert tools.resolve(NodeRequest("18.20.4", ".nvmrc"), notes.append) == (18, 20, 4)
    assert notes == []
    assert tools.resolve(NodeRequest(">=18", ".nvmrc"), notes.append) == (20, 1, 0)
    assert "installed here" in notes[-1]


def test_registry_metadata_is_cached_and_used_stale(tmp_path: Path) -> None:
    from shipyard.builds.npmreg import Registry

    cache = tmp_path / "meta"
    cache.mkdir()
    (cache / "@scope%2fpkg.json").write_text(json.dumps({"versions": {"1.0.0": {}}}))
    fresh = Registry("http://127.0.0.1:9", cache)
    assert fresh.versions("@scope/pkg") == {"1.0.0": {}}
    stale = Registry("http://127.0.0.1:9", cache, ttl_s=0)  # expired: asks, fails, uses it
    assert stale.versions("@scope/pkg") == {"1.0.0": {}}


def test_python_tools_are_links_to_their_own_virtualenv(tmp_path: Path) -> None:
    import sys

    from shipyard.builds.python import python_tools_dir

    tools = python_tools_dir(tmp_path)
    own = Path(sys.prefix) / "tools" / "bin"  # make install: uv and poetry apart from Shipyard
    assert (own / "uv").is_file(), "uv and poetry are installed by `make install`"
    assert tools is not None and tools != own and tools != Path(sys.prefix) / "bin"
    assert (tools / "uv").readlink() == own / "uv"
    assert sorted(p.name for p in tools.iterdir()) == ["poetry", "uv", "uvx"]
    assert not (Path(sys.prefix) / "bin" / "poetry").exists()  # not in Shipyard's own


def test_a_host_runtime_without_its_toolchain_fails_the_build_naming_the_package(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from shipyard.builds.toolchain import prepare_toolchain

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    settings = replace(Settings(home=tmp_path / "home"), host=HostEnv(search_path=(str(empty),)))
    with pytest.raises(BuildFailed) as caught:
        prepare_toolchain(
            settings, service="rails", runtime="ruby", workdir=tmp_path, venv=tmp_path / "v",
            service_env={}, notify=lambda _: None,
        )  # fmt: skip
    assert "`bundle` is not installed" in caught.value.message
    assert "apt-get install ruby-bundler" in caught.value.message
