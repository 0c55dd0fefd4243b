"""A release's toolchain, chosen at build time and recorded with the release.

The build chooses it (Node version and package manager, Python interpreter and its virtualenv,
see builds/node.py and builds/python.py), records it in ``releases/<N>/toolchain.json``, and
the release's pre-deploy command and instances run with the same one (a rollback runs with the
Node its release was built with). Builds also get the service's build cache (builds/cache.py).
Everything is resolved per build from what the host and the toolchain directory hold now: a
tool installed while the daemon runs is used by the next build.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.builds.cache import CACHE_VARS, cache_env, ensure_service_cache
from shipyard.builds.environment import RECORD, Toolchain, runtime_toolchain
from shipyard.builds.node import NodeToolchains
from shipyard.builds.npmreg import Registry
from shipyard.builds.python import (
    choose_interpreter,
    create_venv,
    host_interpreters,
    probe_interpreter,
    python_env,
    python_request,
    python_tools_dir,
)
from shipyard.errors import BuildFailed
from shipyard.settings import Settings


@dataclass(frozen=True)
class BuildToolchain:
    toolchain: Toolchain  # the release's (recorded; builds, pre-deploy and instances)
    build_env: Mapping[str, str] = field(default_factory=dict)  # builds only: caches


PNPM_ONLY = frozenset(CACHE_VARS["pnpm"])


def node_toolchains(settings: Settings) -> NodeToolchains:
    root = settings.toolchains_dir
    registry = Registry(settings.npm_registry, root / "npm-metadata")
    return NodeToolchains(root, registry, settings.host.search_path)


def prepare_toolchain(
    settings: Settings,
    *,
    service: str,
    runtime: str,
    workdir: Path,
    venv: Path,
    service_env: Mapping[str, str],
    notify: Callable[[str], None],
    commands: tuple[str, ...] = (),
) -> BuildToolchain:
    """Choose, install (once per version) and return the toolchain of one build. A Python
    release gets its virtualenv at ``venv`` here. BuildFailed with the reason otherwise."""
    build_env = cache_env(ensure_service_cache(settings, service))
    host = runtime_toolchain(runtime, settings.host)
    if runtime == "node":
        setup = node_toolchains(settings).setup(service_env, workdir, notify, commands)
        path = _unique((*setup.path, *host.path))
        if setup.package_manager.name != "pnpm":  # npm warns about pnpm's npm_config_ keys
            build_env = {k: v for k, v in build_env.items() if k not in PNPM_ONLY}
        return BuildToolchain(Toolchain(path=path, env=setup.env), build_env)
    if runtime == "python":
        request = python_request(service_env, workdir)
        default = probe_interpreter(settings.python_bin)
        found = host_interpreters(settings.host.search_path) if request else []
        if request and default is None and not found:
            raise BuildFailed(f"No Python interpreter found for {request.source}.")
        interpreter, note = choose_interpreter(request, default, found)
        if note:
            notify(note)
        if request:
            notify(f"Python {interpreter.text} ({interpreter.path}, from {request.source})")
        create_venv(venv, interpreter.path, settings.toolchains_dir)
        tools = python_tools_dir(settings.toolchains_dir)
        path = (str(venv / "bin"), *([str(tools)] if tools else []))
        return BuildToolchain(Toolchain(path=path, env=python_env(venv)), build_env)
    needed = HOST_RUNTIMES.get(runtime)
    if needed is not None:
        tool, package = needed
        if shutil.which(tool, path=os.pathsep.join(settings.host.search_path)) is None:
            raise BuildFailed(
                f"runtime {runtime}: `{tool}` is not installed on this machine (on Debian: "
                f"apt-get install {package}). Shipyard installs Node versions and picks Python "
                f"interpreters itself; {runtime} services build with the host's toolchain."
            )
    return BuildToolchain(host, build_env)


# runtimes built with the host's own toolchain: the command they need, the Debian package
HOST_RUNTIMES = {
    "ruby": ("bundle", "ruby-bundler"),
    "go": ("go", "golang"),
    "rust": ("cargo", "cargo"),
    "elixir": ("mix", "elixir"),
}


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def save_record(release_dir: Path, toolchain: Toolchain) -> None:
    data = {"path": list(toolchain.path), "env": dict(toolchain.env)}
    tmp = release_dir / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(release_dir / RECORD)
