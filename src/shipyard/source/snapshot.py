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
    """Shallow-clone ``branch`` of ``repo`` into ``dest``; UsageError naming repo and branch."""
    cmd = ["git", "clone", "--quiet", "--depth", "1", "--branch", branch, "--", repo, str(dest)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"git clone of {repo!r} (branch {branch!r}) failed: {exc}") from exc
    if out.returncode != 0:
        detail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "unknown error"
        raise UsageError(
            f"Cannot check out branch {branch!r} of repository {repo!r}: {detail}",
            fields={"repo": repo, "branch": branch},
        )
    shutil.rmtree(dest / ".git", ignore_errors=True)
    info = git_info_remote(repo, branch)
    return info


def git_info_remote(repo: str, branch: str) -> GitInfo:
    out = subprocess.run(
        ["git", "ls-remote", "--", repo, f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    commit = out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return GitInfo(commit=commit, branch=branch)
