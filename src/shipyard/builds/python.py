"""A virtualenv per Python release, so a service's ``pip install`` never touches Shipyard's own
environment, two services with conflicting pins both run, and a rollback runs with exactly the
packages its release was built with.

Creating a virtualenv with pip takes 1-7 s; a release copies a template instead (~0.3 s): the
template is made once per base interpreter with ``virtualenv`` (pip and setuptools seeded from
its bundled wheels, no network) under SHIPYARD_HOME/toolchains, and each copy has the
template's path rewritten to its own in the scripts that name it (shebangs, activate scripts,
pyvenv.cfg). The interpreter itself is a symlink to the base Python, which is never written to.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from shipyard.disk import is_disk_full
from shipyard.errors import BuildFailed, NoDiskSpace
from shipyard.release.files import make_private

_TIMEOUT_S = 300.0


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
    cmd = [sys.executable, "-m", "virtualenv", "--quiet", "--no-periodic-update",
           "--python", python, str(dest)]  # fmt: skip
    try:
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
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
