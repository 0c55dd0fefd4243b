"""The environment of every build, pre-deploy command and instance, built from scratch (pure).

Nothing of the daemon's own environment leaks in: no Shipyard virtualenv on PATH, no
VIRTUAL_ENV, no SHIPYARD_* settings, no API token. What a process receives, in this order
(later entries win):

1. defaults: ``PATH`` = the service's toolchain directories, then the system directories;
   ``HOME`` and ``TMPDIR`` of its own (builds and instances have separate ones, so a build's
   caches and locks never meet the running app's); ``LANG=C.UTF-8``; ``USER``/``LOGNAME``;
2. the host's CA and proxy settings (:data:`PASSTHROUGH`, plus any names the operator adds
   with ``SHIPYARD_BUILD_PASSTHROUGH``), so builds behind a proxy or a private CA work;
3. the toolchain's variables (Python: ``VIRTUAL_ENV`` of the release, ``PYTHONUNBUFFERED=1``
   and what points pip, uv and poetry at it; Node: corepack's), recorded with the release
   at build time (builds/toolchain.py); builds also get the service's build cache;
4. the service's own env vars from the Blueprint;
5. Render's platform variables (``RENDER=true``, ``RENDER_SERVICE_NAME``, ``PORT``, ...).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.hostenv import SYSTEM_PATH, HostEnv

# Tools whose directory joins PATH when they live outside the system directories (a Node from
# nvm, a Go from /usr/local/go, a Rust from ~/.cargo), per Blueprint runtime.
RUNTIME_TOOLS: dict[str, tuple[str, ...]] = {
    "node": ("node", "npm", "npx", "yarn", "pnpm", "corepack"),
    "python": (),  # the release's own virtualenv (see builds/python.py)
    "go": ("go",),
    "rust": ("cargo", "rustc"),
    "ruby": ("ruby", "bundle", "gem"),
    "elixir": ("elixir", "mix", "erl"),
}


@dataclass(frozen=True)
class Toolchain:
    """What a service's runtime adds: directories in front of PATH, and variables."""

    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def runtime_toolchain(runtime: str, host: HostEnv) -> Toolchain:
    """The directories of a runtime's tools found on the host, outside the system ones."""
    extra: list[str] = []
    search = os.pathsep.join(host.search_path)
    for tool in RUNTIME_TOOLS.get(runtime, ()):
        found = shutil.which(tool, path=search)
        if found is None:
            continue
        directory = str(Path(found).parent)
        if directory not in SYSTEM_PATH and directory not in extra:
            extra.append(directory)
    return Toolchain(path=tuple(extra))


def python_toolchain(venv: Path) -> Toolchain:
    """A Python release runs (and builds) inside its own virtualenv, as Render's native Python
    runtime does: ``pip install`` in a buildCommand installs there and nowhere else."""
    return Toolchain(
        path=(str(venv / "bin"),),
        env={"VIRTUAL_ENV": str(venv), "PYTHONUNBUFFERED": "1"},
    )


# The toolchain a release was built with, in its directory (beside ``venv``).
RECORD = "toolchain.json"


def load_record(release_dir: Path) -> Toolchain | None:
    """The toolchain recorded for a release; None for releases built before it was recorded."""
    try:
        data = json.loads((release_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    path = data.get("path") if isinstance(data, dict) else None
    env = data.get("env") if isinstance(data, dict) else None
    if not isinstance(path, list) or not isinstance(env, dict):
        return None
    return Toolchain(path=tuple(str(p) for p in path), env={str(k): str(v) for k, v in env.items()})


def release_toolchain(runtime: str, venv: Path, host: HostEnv) -> Toolchain:
    """The toolchain of one release (``venv`` is ``releases/<N>/venv``): the one recorded when
    it was built; for older releases, a Python release's own virtualenv when it has one, else
    the runtime's tools found on the host."""
    recorded = load_record(venv.parent)
    if recorded is not None:
        return recorded
    if runtime == "python" and venv.is_dir():
        return python_toolchain(venv)
    return runtime_toolchain(runtime, host)


def compose_env(
    *,
    host: HostEnv,
    home: Path,
    tmp: Path,
    toolchain: Toolchain,
    service_env: Mapping[str, str],
    platform_env: Mapping[str, str],
    build_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of one process (see the module docstring for the order)."""
    env: dict[str, str] = {
        "PATH": os.pathsep.join((*toolchain.path, *SYSTEM_PATH)),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
    }
    if host.user:
        env["USER"] = env["LOGNAME"] = host.user
    env.update(host.passthrough)
    env.update(toolchain.env)
    env.update(build_env or {})  # builds: the build cache (the service's env may override it)
    env.update(service_env)
    env.update(platform_env)
    return env
