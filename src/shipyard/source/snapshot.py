"""Source snapshots: a local directory or a git repository + branch, copied into a fresh workdir.

A deploy never builds in the user's directory: it copies the tree (without .git) so the release
is immutable even if the user keeps editing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import UsageError

IGNORED = frozenset({".git", ".shipyard", "__pycache__"})  # names never copied


@dataclass(frozen=True)
class GitInfo:
    commit: str = ""
    branch: str = ""


def git_info(path: Path) -> GitInfo:
    """Commit and branch of the git work tree holding ``path`` ("" when not a repository)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(path), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    branch = git("rev-parse", "--abbrev-ref", "HEAD") if commit else ""
    return GitInfo(commit=commit, branch="" if branch == "HEAD" else branch)


def copy_tree(src: Path, dest: Path, exclude: Path | None = None) -> None:
    """Copy a source tree into ``dest`` (which must not exist): regular files and directories
    private to Shipyard's user (group and other bits dropped, owner bits and mtimes kept),
    symlinks kept as RELATIVE links inside the copy, anything else (sockets, fifos, devices)
    left out.

    A symlink is resolved (chains included) against the source tree: one that points inside
    it becomes a relative link to the same file in the copy, so the release never reads the
    user's live directory; one that points outside raises UsageError naming it. ``exclude``
    (Shipyard's own home, when it lives inside the source tree) is skipped, or a deploy would
    copy its own releases into themselves.
    """
    root = src.resolve()
    skip = exclude.resolve() if exclude is not None else None
    dest.mkdir(mode=0o700)
    for dirpath, dirnames, filenames in os.walk(root):  # never follows symlinked directories
        here = Path(dirpath)
        out = dest / here.relative_to(root)
        kept = []
        for name in sorted(dirnames):
            path = here / name
            if name in IGNORED or path == skip:
                continue
            if path.is_symlink():
                _copy_link(path, root, dest)
                continue
            (out / name).mkdir(mode=0o700)
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            path = here / name
            if name in IGNORED:
                continue
            if path.is_symlink():
                _copy_link(path, root, dest)
            elif _is_file(path):
                _copy_file(path, out / name)


def tree_bytes(src: Path, exclude: Path | None = None) -> int:
    """The bytes ``copy_tree`` would copy (regular files, the same names left out)."""
    root = src.resolve()
    skip = exclude.resolve() if exclude is not None else None
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames
                       if n not in IGNORED and Path(dirpath, n) != skip]  # fmt: skip
        for name in filenames:
            if name not in IGNORED:
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(dirpath, name))
                    total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


def _is_file(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)


def _copy_file(src: Path, dest: Path) -> None:
    """Copy one regular file through descriptors opened without following links: a file
    swapped for a link meanwhile is refused, and modes are only ever set on the copy."""
    try:
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{src} changed into a symlink while it was copied") from exc
        raise
    with os.fdopen(fd_in, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            return  # changed into something else meanwhile: not a file to copy
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd_out, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
            os.fchmod(copy.fileno(), stat.S_IMODE(info.st_mode) & 0o700)
            copy.flush()
            os.utime(copy.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_link(link: Path, root: Path, dest: Path) -> None:
    """Re-create ``link`` (inside ``root``) in ``dest`` as a relative link to the same file of
    the copy; UsageError if it resolves outside ``root``."""
    target = Path(os.path.realpath(link))
    relative = link.relative_to(root)
    if not target.is_relative_to(root):
        raise UsageError(
            f"{relative} is a symlink to {os.readlink(link)!r}, outside the source tree "
            f"{root}: a release holds only files of its source; copy what it needs into the "
            "repository or remove the link",
            fields={"path": str(relative), "target": os.readlink(link)},
        )
    copy = dest / relative
    os.symlink(os.path.relpath(dest / target.relative_to(root), copy.parent), copy)


def git_checkout(repo: str, branch: str, dest: Path) -> GitInfo:
    """Shallow-clone ``branch`` of ``repo`` into ``dest`` and return the commit that was cloned
    (read from the clone itself: a push after the clone must not be recorded as built).
    Failures raise UsageError naming the repository and the branch."""
    cmd = ["git", "clone", "--quiet", "--depth", "1", "--branch", branch, "--", repo, str(dest)]
    _git(cmd, repo, branch, timeout=600)
    commit = _git(["git", "-C", str(dest), "rev-parse", "HEAD"], repo, branch, timeout=30)
    shutil.rmtree(dest / ".git", ignore_errors=True)
    return GitInfo(commit=commit.strip(), branch=branch)


def _git(cmd: list[str], repo: str, branch: str, *, timeout: float) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UsageError(
            f"git {cmd[1] if cmd[1] != '-C' else cmd[3]} of {repo!r} (branch {branch!r}) "
            f"did not finish within {timeout:g} s",
            fields={"repo": repo, "branch": branch},
        ) from exc
    except OSError as exc:
        raise UsageError(
            f"Cannot run git for {repo!r} (branch {branch!r}): {exc.strerror or exc}; "
            "is git installed?",
            fields={"repo": repo, "branch": branch},
        ) from exc
    if out.returncode != 0:
        detail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "unknown error"
        raise UsageError(
            f"Cannot check out branch {branch!r} of repository {repo!r}: {detail}",
            fields={"repo": repo, "branch": branch},
        )
    return out.stdout
