"""Installed dependencies reused from the service's previous release when nothing that decides
them changed (a warm build, like a Docker layer hit).

The *dependency key* of a release is a digest of its runtime, toolchain (interpreter, Node,
package manager, with the release's own paths taken out), rootDir, buildCommand and the bytes
of every dependency manifest and lockfile in its working directory. When the newest earlier
release that built has the same key, the new release starts from a copy of its installed
dependencies: the Python virtualenv (its location rewritten where a virtualenv names it:
pyvenv.cfg, scripts, .pth files and editable-install records) or ``node_modules``. The
buildCommand then runs as always: ``pip install -r`` finds everything satisfied, ``yarn`` and
``pnpm install`` find node_modules up to date, ``npm ci`` removes it and installs from the
cache. With no manifest at all nothing is reused: there is nothing to key on. The copy is the
release's own (the previous one is never written to); equal files share their data afterwards
(release/files.py).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

from shipyard.context import Context

KEY_FILE = "deps.key"
PYTHON_MANIFESTS = ("requirements*.txt", "requirements/*.txt", "constraints*.txt",
                    "pyproject.toml", "poetry.lock", "uv.lock", "Pipfile", "Pipfile.lock",
                    "setup.py", "setup.cfg", "pdm.lock")  # fmt: skip
NODE_MANIFESTS = ("package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
                  "pnpm-lock.yaml", "pnpm-workspace.yaml", "bun.lockb", "bun.lock",
                  ".yarnrc.yml", ".yarnrc", ".npmrc")  # fmt: skip


def dependency_key(
    runtime: str, workdir: Path, release_dir: Path, toolchain_record: str, root_dir: str,
    build_command: str,
) -> str | None:  # fmt: skip
    patterns = {"python": PYTHON_MANIFESTS, "node": NODE_MANIFESTS}.get(runtime)
    if patterns is None:
        return None
    files = sorted({p for pattern in patterns for p in workdir.glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for part in (runtime, toolchain_record.replace(str(release_dir), "<release>"), root_dir,
                 build_command):  # fmt: skip
        digest.update(part.encode() + b"\0")
    for path in files:
        digest.update(str(path.relative_to(workdir)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def seed_dependencies(
    ctx: Context, service: str, number: int, release_dir: Path, workdir: Path, runtime: str,
    key: str, notify: Callable[[str], None],
) -> bool:  # fmt: skip
    """Copy the installed dependencies of the newest earlier built release with ``key``;
    True if it did."""
    (release_dir / KEY_FILE).write_text(key + "\n")
    for earlier in sorted(ctx.state.releases(service), key=lambda r: -r.number):
        if earlier.number >= number or earlier.pruned or not earlier.deployable:
            continue
        old_dir = Path(earlier.dir)
        try:
            same = (old_dir / KEY_FILE).read_text().strip() == key
        except OSError:
            same = False
        if not same:
            continue
        rel = workdir.relative_to(release_dir / "app")
        if runtime == "python":
            done = _copy_venv(old_dir / "venv", release_dir / "venv", old_dir, release_dir)
        else:
            done = _copy_tree(old_dir / "app" / rel / "node_modules", workdir / "node_modules")
        if done:
            what = "virtualenv" if runtime == "python" else "node_modules"
            notify(f"dependencies unchanged since release {earlier.number}: starting from its "
                   f"installed {what}")  # fmt: skip
        return done
    return False


def _copy_tree(src: Path, dest: Path) -> bool:
    if not src.is_dir() or dest.exists():
        return False
    try:
        shutil.copytree(src, dest, symlinks=True)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        return False
    return True


def _copy_venv(src: Path, dest: Path, old_dir: Path, new_dir: Path) -> bool:
    if not (src / "pyvenv.cfg").is_file():
        return False
    staging = dest.with_name(dest.name + ".seed")
    shutil.rmtree(staging, ignore_errors=True)
    if not _copy_tree(src, staging):
        return False
    old, new = str(old_dir).encode(), str(new_dir).encode()
    candidates = [staging / "pyvenv.cfg", *(staging / "bin").iterdir()]
    for site in staging.glob("lib/python*/site-packages"):
        candidates += [*site.glob("*.pth"), *site.glob("*.dist-info/direct_url.json"),
                       *site.glob("*.dist-info/RECORD"), *site.glob("__editable__*")]  # fmt: skip
    for path in candidates:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return True
