"""A virtualenv per Python release, so a service's ``pip install`` never touches Shipyard's own
environment, two services with conflicting pins both run, and a rollback runs with exactly the
packages its release was built with.

Creating a virtualenv with pip takes 1-7 s; a release copies a template instead (~0.3 s): the
template is made once per base interpreter with ``virtualenv`` (pip from its bundled wheel,
setuptools 80.9 - the last with pkg_resources - from the package index when reachable, else the
bundled one) under SHIPYARD_HOME/toolchains, and each copy has the
template's path rewritten to its own in the scripts that name it (shebangs, activate scripts,
pyvenv.cfg). The interpreter itself is a symlink to the base Python, which is never written to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.disk import is_disk_full
from shipyard.errors import BuildFailed, NoDiskSpace
from shipyard.release.files import make_private

_TIMEOUT_S = 300.0
SETUPTOOLS = "80.9.0"  # the last setuptools with pkg_resources


def create_venv(dest: Path, python: str, cache_dir: Path) -> None:
    """Create a fresh virtualenv at ``dest`` (which must not exist) for ``python``."""
    template = _template(python, cache_dir)
    try:
        shutil.copytree(template, dest, symlinks=True)
        _rewrite_location(dest, template, dest)
    except OSError as exc:  # shutil.Error (an OSError) lists every file that failed
        if is_disk_full(exc):
            raise NoDiskSpace(f"not enough disk space to create the virtualenv {dest}") from exc
        raise BuildFailed(f"Could not create the virtualenv {dest}: {_first(exc)}") from exc


def _rewrite_location(venv: Path, old_path: Path, new_path: Path) -> None:
    """In the files of ``venv`` that name its location (pyvenv.cfg, the scripts' shebangs, the
    activate scripts), replace ``old_path`` by ``new_path``."""
    old, new = str(old_path).encode(), str(new_path).encode()
    for path in [venv / "pyvenv.cfg", *(venv / "bin").iterdir()]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def _template(python: str, cache_dir: Path) -> Path:
    real = os.path.realpath(python)
    try:
        stamp = f"{real}:{os.stat(real).st_mtime_ns}"
    except OSError as exc:
        raise BuildFailed(
            f"The Python interpreter {python} for Python services does not exist "
            f"({exc.strerror}); set SHIPYARD_PYTHON to an installed python3."
        ) from exc
    template = cache_dir / f"venv-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"
    if (template / "pyvenv.cfg").is_file():
        return template
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per template; the others wait for it
        if (template / "pyvenv.cfg").is_file():
            return template
        staging = template.with_name(template.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _run_virtualenv(python, staging, cache_dir)
        _rewrite_location(staging, staging, template)
        make_private(staging)
        staging.rename(template)
    return template


def _run_virtualenv(python: str, dest: Path, cache_dir: Path) -> None:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(cache_dir),
        "VIRTUALENV_OVERRIDE_APP_DATA": str(cache_dir / "app-data"),
    }
    base = [sys.executable, "-m", "virtualenv", "--quiet", "--no-periodic-update",
            "--python", python]  # fmt: skip
    try:
        # setuptools 82 dropped pkg_resources, which many pinned packages still import (gunicorn
        # 20, for one); a template gets the last release with it, as `python -m venv` of Python
        # 3.11 does (65.x). Offline, the bundled one.
        out = subprocess.run(
            [*base, "--setuptools", SETUPTOOLS, "--download", str(dest)], env=env,
            capture_output=True, text=True, timeout=_TIMEOUT_S, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            out = subprocess.run(
                [*base, str(dest)], env=env, capture_output=True, text=True,
                timeout=_TIMEOUT_S, check=False,
            )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildFailed(f"Could not create a virtualenv for {python}: {exc}") from exc
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip()[-2000:]
        raise BuildFailed(f"Could not create a virtualenv for {python}: {detail}")


def _first(exc: OSError) -> str:
    """One line for an error: the first of the files a shutil.Error lists."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        failures = exc.args[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return f"{failures[0][2]}{more}" if failures else str(exc)
    return str(exc)


# -- choosing the interpreter ----------------------------------------------------------------

# Where interpreters are looked for, besides the daemon's PATH (pythonX.Y names).
PYTHON_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
PythonVersion = tuple[int, ...]


@dataclass(frozen=True)
class PythonRequest:
    spec: str  # "3.11", "3.11.2"
    source: str  # "PYTHON_VERSION" or ".python-version"

    @property
    def parts(self) -> PythonVersion:
        return tuple(int(p) for p in self.spec.split("."))


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: PythonVersion

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version))


def python_request(service_env: Mapping[str, str], workdir: Path) -> PythonRequest | None:
    """The Python version the service asks for (``PYTHON_VERSION``, else ``.python-version``
    in its rootDir), or None. BuildFailed when it is not a version."""
    spec, source = service_env.get("PYTHON_VERSION", "").strip(), "PYTHON_VERSION"
    if not spec and (workdir / ".python-version").is_file():
        source = ".python-version"
        with contextlib.suppress(OSError):
            for line in (workdir / ".python-version").read_text(errors="replace").splitlines():
                if line.split("#", 1)[0].strip():
                    spec = line.split("#", 1)[0].strip()
                    break
    if not spec:
        return None
    spec = spec.removeprefix("python").removeprefix("cpython-").removeprefix("v")
    if not re.fullmatch(r"\d+(\.\d+){0,2}", spec):
        raise BuildFailed(
            f"{source} has value {spec!r}. Expected a Python version such as 3.11 or 3.11.9."
        )
    return PythonRequest(spec, source)


def choose_interpreter(
    request: PythonRequest | None, default: Interpreter | None, found: list[Interpreter]
) -> tuple[Interpreter, str]:
    """The interpreter for ``request`` among the ``default`` one and those ``found`` on the host,
    and a note for the build log ("" when nothing to say) (pure). An exact version is preferred;
    a different patch release of the same X.Y is accepted with a note. BuildFailed (naming the
    version and what to install) when no interpreter has it."""
    candidates = ([default] if default else []) + [i for i in found if i != default]
    if request is None:
        if default is None:
            raise BuildFailed("No Python interpreter for Python services: set SHIPYARD_PYTHON.")
        return default, ""
    wanted = request.parts
    exact = [i for i in candidates if i.version[: len(wanted)] == wanted]
    if exact:
        return max(exact, key=lambda i: (i == default, i.version)), ""
    minor = [i for i in candidates if i.version[:2] == wanted[:2]]
    if minor and len(wanted) > 2:
        chosen = max(minor, key=lambda i: (i == default, i.version))
        return chosen, (
            f"{request.source} asks for Python {request.spec}; this host has {chosen.text} "
            f"({chosen.path}), which is used"
        )
    have = ", ".join(sorted({f"{i.text} ({i.path})" for i in candidates})) or "none"
    xy = ".".join(map(str, wanted[:2]))
    raise BuildFailed(
        f"{request.source} asks for Python {request.spec}, which is not installed on this host "
        f"(installed: {have}). Install it (e.g. `apt-get install python{xy}`, or put a "
        f"python{xy} in /usr/local/bin), or set PYTHON_VERSION to an installed version."
    )


def host_interpreters(search_path: Iterable[str]) -> list[Interpreter]:
    """The pythonX.Y interpreters in the system directories and on the daemon's PATH, looked up
    now (one installed after the daemon started counts)."""
    seen: set[str] = set()
    found: list[Interpreter] = []
    for directory in (*search_path, *PYTHON_DIRS):
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(directory)):
                if not re.fullmatch(r"python3\.\d+", entry):
                    continue
                path = os.path.join(directory, entry)
                real = os.path.realpath(path)
                if real in seen or not os.access(path, os.X_OK):
                    continue
                seen.add(real)
                interpreter = probe_interpreter(path)
                if interpreter is not None:
                    found.append(interpreter)
    return found


def probe_interpreter(path: str) -> Interpreter | None:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print(*sys.version_info[:3], sep='.')"],
            capture_output=True, text=True, timeout=30, check=False,
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"\d+\.\d+\.\d+", text):
        return None
    return Interpreter(path, tuple(int(p) for p in text.split(".")))


# -- pip, uv and poetry for builds -----------------------------------------------------------

PYTHON_TOOLS = ("uv", "uvx", "poetry")


def python_tools_dir(toolchains: Path) -> Path | None:
    """A directory of links to the uv and poetry installed for builds (`make install` puts
    them in a virtualenv of their own, ``<Shipyard's venv>/tools``; else those installed next
    to Shipyard), never Shipyard's own bin directory: nothing else of its environment joins a
    build's PATH. Refreshed per build; None when neither is installed."""
    targets: dict[str, Path] = {}
    for bin_dir in (Path(sys.prefix) / "tools" / "bin", Path(sys.prefix) / "bin"):
        for tool in PYTHON_TOOLS:
            if tool not in targets and (bin_dir / tool).is_file():
                targets[tool] = bin_dir / tool
    if not targets:
        return None
    tools = toolchains / "python-tools"
    tools.mkdir(parents=True, exist_ok=True)
    for name, target in targets.items():
        link = tools / name
        if link.is_symlink() and link.readlink() == target:
            continue
        tmp = tools / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(link)
    return tools


def python_env(venv: Path) -> dict[str, str]:
    """What makes pip, uv and poetry install into the release's virtualenv."""
    return {
        "VIRTUAL_ENV": str(venv),
        "PYTHONUNBUFFERED": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # poetry: install into the active virtualenv (VIRTUAL_ENV), never a new one
        "POETRY_VIRTUALENVS_CREATE": "false",
        "POETRY_VIRTUALENVS_IN_PROJECT": "false",
        # uv: `uv sync` installs into the release venv, `uv pip` uses VIRTUAL_ENV; interpreters
        # are never downloaded (their source is not reachable from every host)
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": str(venv / "bin" / "python"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
