"""Source snapshots: a local directory or a git repository + branch, copied into a fresh workdir.

A deploy never builds in the user's directory: it copies the tree (without .git) so the release
is immutable even if the user keeps editing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import UsageError

IGNORED = shutil.ignore_patterns(".git", ".shipyard", "__pycache__")


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
    """Copy a source tree into ``dest`` (which must not exist), keeping symlinks as links.

    ``exclude`` (Shipyard's own home, when it lives inside the source tree) is skipped, or a
    deploy would copy its own releases into themselves.
    """
    skip = exclude.resolve() if exclude is not None else None

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(IGNORED(directory, names))
        if skip is not None:
            ignored |= {n for n in names if (Path(directory) / n).resolve() == skip}
        return ignored

    shutil.copytree(src, dest, symlinks=True, ignore=ignore)


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
