"""Source snapshots with real git (fast, local repositories only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipyard.errors import UsageError
from shipyard.source.snapshot import git_checkout

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "PATH": "/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("one\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    return root


def test_checkout_records_the_commit_it_cloned(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    info = git_checkout(str(repo), "main", tmp_path / "co")
    (repo / "a.txt").write_text("two\n")  # a push after the clone ...
    git(repo, "commit", "-qam", "two")
    assert info.commit == first and info.branch == "main"  # ... is not what was built
    assert (tmp_path / "co" / "a.txt").read_text() == "one\n"
    assert not (tmp_path / "co" / ".git").exists()


def test_unknown_branch_names_repo_and_branch(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        git_checkout(str(repo), "nope", tmp_path / "co")
    assert "'nope'" in err.value.message and str(repo) in err.value.message


def test_the_api_policy_covers_file_urls_and_linked_blueprints(repo: Path, tmp_path: Path) -> None:
    from shipyard.source.open import open_source

    allowed_dir = tmp_path / "allowed"
    (allowed_dir / "app").mkdir(parents=True)
    outside = tmp_path / "outside.yaml"
    outside.write_text("services: []\n")
    (allowed_dir / "app" / "render.yaml").symlink_to(outside)

    def allowed(path: Path) -> bool:
        return path.resolve().is_relative_to(allowed_dir)

    scratch = tmp_path / "scratch"
    for address in (str(repo), f"file://{repo}", f"file://{repo}/../repo"):
        with pytest.raises(UsageError, match="outside the directories"):
            open_source(None, address, "main", scratch, allowed=allowed)
    with pytest.raises(UsageError, match="outside the directories"):
        open_source(str(allowed_dir / "app"), None, None, scratch, allowed=allowed)
