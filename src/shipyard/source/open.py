"""Open a deploy's source: a directory (or Blueprint file) on this machine, or a branch of a git
repository cloned into a scratch directory; load its Blueprint."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.blueprint.load import LoadedBlueprint, find_blueprint, load_blueprint
from shipyard.errors import UsageError
from shipyard.source.snapshot import GitInfo, git_checkout, git_info


@dataclass
class Source:
    loaded: LoadedBlueprint
    root: Path
    git: GitInfo
    label: str  # where the code comes from, for people
    blueprint_id: str  # stable across deploys of the same Blueprint (orphan detection)
    cleanup: Callable[[], None] = field(default=lambda: None)


def open_source(
    blueprint: str | None, repo: str | None, branch: str | None, scratch: Path
) -> Source:
    """Load the Blueprint from a directory/file, or from ``branch`` of ``repo`` cloned under
    ``scratch``; the caller owns ``Source.cleanup`` (a checkout lives until its deploy has
    copied it). Bad input raises UsageError (or BlueprintError) naming what and where."""
    if not repo:
        path = Path(blueprint or ".").expanduser().absolute()
        if path.is_dir():
            path = find_blueprint(path)
        elif not path.exists():
            raise UsageError(
                f"Blueprint file {str(path)!r} does not exist.", fields={"blueprint": str(path)}
            )
        loaded = load_blueprint(path)
        return Source(loaded, loaded.root, git_info(loaded.root), str(loaded.root),
                      str(loaded.path))  # fmt: skip
    branch = branch or "main"
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="checkout-", dir=scratch))
    try:
        checkout = tmp / "src"
        git = git_checkout(repo, branch, checkout)
        path = (checkout / blueprint).resolve() if blueprint else find_blueprint(checkout)
        if not path.is_relative_to(checkout.resolve()) or not path.is_file():
            raise UsageError(f"{blueprint!r} is not a file in {repo} (branch {branch}).")
        loaded = load_blueprint(path)
        blueprint_id = f"{repo}@{branch}:{path.relative_to(checkout.resolve())}"
        return Source(loaded, loaded.root, git, f"{repo}@{branch}", blueprint_id,
                      lambda: shutil.rmtree(tmp, ignore_errors=True))  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
