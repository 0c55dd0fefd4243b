"""Open a deploy's source: a directory (or Blueprint file) on this machine, or a branch of a git
repository cloned into a scratch directory; load its Blueprint."""

from __future__ import annotations

import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.blueprint.limits import BlueprintLimits
from shipyard.blueprint.load import (
    SHIPYARD_NAMES,
    Kind,
    LoadedBlueprint,
    find_blueprint,
    load_blueprint,
    parse_blueprint,
)
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
    # where it comes from, so a trigger can deploy it again: kind ("dir", "repo": a Shipyard
    # repository, "git": a repository URL or path), location, the Blueprint file (absolute
    # for "dir", else relative to the repository)
    origin: tuple[str, str, str] = ("", "", "")


def open_source(
    blueprint: str | None,
    repo: str | None,
    branch: str | None,
    scratch: Path,
    *,
    allowed: Callable[[Path], bool] | None = None,
    limits: BlueprintLimits | None = None,
) -> Source:
    """Load the Blueprint from a directory/file, or from ``branch`` of ``repo`` cloned under
    ``scratch``; the caller owns ``Source.cleanup`` (a checkout lives until its deploy has
    copied it). Bad input raises UsageError (or BlueprintError) naming what and where.

    ``allowed`` (the API's policy) decides which local paths may be read at all: a refused
    path is refused before anything is read from it, existence included; a file given by
    path must also be named like YAML."""
    limits = limits or BlueprintLimits()
    if repo and allowed is not None:
        local = _local_repo_path(repo)
        if local is not None:  # checked as resolved, and git gets exactly what was checked
            _check_allowed(local, allowed, "repository")
            repo = str(local)
    if not repo:
        path = Path(blueprint or ".").expanduser().absolute()
        if allowed is not None:
            _check_allowed(path, allowed, "Blueprint")
            if path.suffix not in (".yaml", ".yml") and not path.is_dir():
                raise UsageError(
                    f"{str(path)!r} is not a Blueprint: give a directory or a .yaml/.yml file.",
                    fields={"blueprint": str(path)},
                )
        if path.is_dir():
            path = find_blueprint(path)
            if allowed is not None:  # the file itself may be a link to somewhere else
                _check_allowed(path.resolve(), allowed, "Blueprint")
        elif not path.exists():
            raise UsageError(
                f"Blueprint file {str(path)!r} does not exist.", fields={"blueprint": str(path)}
            )
        loaded = load_blueprint(path, limits)
        origin = ("dir", str(loaded.root), str(loaded.path))
        return Source(loaded, loaded.root, git_info(loaded.root), str(loaded.root),
                      str(loaded.path), origin=origin)  # fmt: skip
    branch = branch or "main"
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="checkout-", dir=scratch))
    try:
        checkout = tmp / "src"
        git = git_checkout(repo, branch, checkout)
        path = (checkout / blueprint).resolve() if blueprint else find_blueprint(checkout)
        if not path.is_relative_to(checkout.resolve()) or not path.is_file():
            raise UsageError(f"{blueprint!r} is not a file in {repo} (branch {branch}).")
        loaded = load_blueprint(path, limits)
        rel = str(path.relative_to(checkout.resolve()))
        blueprint_id = f"{repo}@{branch}:{rel}"
        return Source(loaded, loaded.root, git, f"{repo}@{branch}", blueprint_id,
                      lambda: shutil.rmtree(tmp, ignore_errors=True),
                      origin=("git", repo, rel))  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def source_from_text(text: str, filename: str, limits: BlueprintLimits) -> Source:
    """A Blueprint sent as content (to plan it): no code, no directory behind it."""
    kind: Kind = "shipyard" if filename in SHIPYARD_NAMES else "render"
    loaded = parse_blueprint(text, filename=filename, kind=kind, limits=limits)
    return Source(loaded, loaded.root, GitInfo(), f"content of {filename}", f"content:{filename}")


def _local_repo_path(repo: str) -> Path | None:
    """The directory a repository address names on this machine (a path, ``~...`` or a
    ``file://`` URL), resolved; None for a remote one (``scheme://host/...``, ``host:path``)."""
    if repo.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(repo).path)).resolve()
    if "://" in repo or re.match(r"^[\w.-]+@?[\w.-]*:", repo):
        return None
    return Path(repo).expanduser().resolve()


def _check_allowed(path: Path, allowed: Callable[[Path], bool], what: str) -> None:
    if not allowed(path):
        raise UsageError(
            f"{what} path {str(path)!r} is outside the directories this Shipyard reads "
            "sources from (SHIPYARD_SOURCE_DIRS; system directories and SHIPYARD_HOME never). "
            "Send the Blueprint's content instead, or allow its directory.",
            fields={"path": str(path)},
        )


def commit_source(
    repo: Path, commit: str, branch: str, scratch: Path, *, kind: str, location: str,
    blueprint: str, blueprint_id: str, label: str, limits: BlueprintLimits,
) -> Source:  # fmt: skip
    """The source of one commit of a local (bare) repository: its tree exported (no .git) and
    its Blueprint loaded from ``blueprint`` (relative; "" = the usual names at the root).
    ``blueprint_id`` keeps the owner the services already have."""
    from shipyard.source import gitrepo

    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="commit-", dir=scratch))
    try:
        checkout = tmp / "src"
        gitrepo.export(repo, commit, checkout)
        path = (checkout / blueprint).resolve() if blueprint else find_blueprint(checkout)
        if not path.is_relative_to(checkout.resolve()) or not path.is_file():
            raise UsageError(f"commit {commit[:12]} of {label} has no Blueprint {blueprint!r}.")
        loaded = load_blueprint(path, limits)
        rel = str(path.relative_to(checkout.resolve()))
        return Source(loaded, loaded.root, GitInfo(commit, branch), f"{label}@{commit[:12]}",
                      blueprint_id or f"{location}@{branch}:{rel}",
                      lambda: shutil.rmtree(tmp, ignore_errors=True),
                      origin=(kind, location, rel))  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
