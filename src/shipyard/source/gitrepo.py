"""Git repositories Shipyard serves (the target of `git push shipyard main`) and mirrors of
the repositories it watches; a deploy's source taken from one commit of either.

A served repository is a bare repository under ``<home>/git/<name>.git`` with a pre-receive
hook (``shipyard.triggers.prereceive``) that asks the daemon to deploy what is pushed and
reports the deploy back to the pusher. A watched repository (a service's ``repo``) is mirrored
under ``<home>/git-mirrors/``; each poll or webhook fetches it, then the commit is read from the
mirror. Either way the source of a deploy is ``git archive`` of one commit: no ``.git``, and
nothing of the repository's configuration or hooks reaches the build.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.settings import Settings

REPO_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
ZERO = "0" * 40
COMMIT = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


class GitError(UsageError):
    """A git command failed; the message holds git's own words."""


def check_name(name: str) -> str:
    if not REPO_NAME.match(name) or ".." in name:
        raise UsageError(
            f"{name!r} is not a repository name: lowercase letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit, at most 64 characters.",
            fields={"name": name},
        )
    return name


def repos_dir(settings: Settings) -> Path:
    return settings.home / "git"


def repo_path(settings: Settings, name: str) -> Path:
    return repos_dir(settings) / f"{check_name(name)}.git"


def git(
    *args: str, cwd: Path | None = None, timeout: float = 120,
    env: dict[str, str] | None = None, stdin: bytes | None = None,
) -> str:  # fmt: skip
    """Run git; its stdout (stripped). A failure raises GitError quoting git's stderr."""
    full_env = {**_clean_env(), **(env or {})}
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, input=stdin, capture_output=True, timeout=timeout,
            env=full_env, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {timeout:g} s and was stopped.") from None
    except OSError as exc:
        raise GitError(f"Cannot run git: {exc.strerror or exc}; is git installed?") from exc
    if out.returncode != 0:
        detail = out.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise GitError(f"git {' '.join(_shown(args))} failed: {' '.join(detail) or out.returncode}")
    return out.stdout.decode(errors="replace").strip()


def _shown(args: tuple[str, ...]) -> list[str]:
    """git's arguments for an error message: a URL's credentials never shown."""
    return [re.sub(r"://[^/@\s]+@", "://***@", a) for a in args[:4]]


def _clean_env() -> dict[str, str]:
    """git's environment: the system's, without anything that would point it at another
    repository (a hook's GIT_DIR, GIT_QUARANTINE_PATH...) or make it prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/true", LC_ALL="C")
    return env


def hook_script(settings: Settings, name: str) -> str:
    python = shlex.quote(sys.executable)
    return (
        "#!/bin/sh\n"
        "# Written by Shipyard (rewritten at each start): deploys what is pushed and reports\n"
        "# the deploy back to the pusher. A failed deploy rejects the push; the commit is kept\n"
        "# as refs/shipyard/failed/<branch>.\n"
        f"SHIPYARD_HOME={shlex.quote(str(settings.home))} "
        f"SHIPYARD_API_PORT={settings.api_port} "
        f"exec {python} -I -m shipyard.triggers.prereceive {shlex.quote(name)}\n"
    )


def install_hook(settings: Settings, name: str) -> None:
    hooks = repo_path(settings, name) / "hooks"
    hooks.mkdir(exist_ok=True)
    for sample in hooks.glob("*.sample"):
        sample.unlink(missing_ok=True)
    hook = hooks / "pre-receive"
    tmp = hook.with_suffix(".tmp")
    tmp.write_text(hook_script(settings, name))
    tmp.chmod(0o755)
    tmp.replace(hook)


def create_repo(settings: Settings, name: str, branch: str) -> Path:
    """A bare repository ready to receive pushes (idempotent)."""
    path = repo_path(settings, name)
    repos_dir(settings).mkdir(mode=0o700, exist_ok=True)
    if not (path / "HEAD").exists():
        git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
    for key, value in (("http.receivepack", "true"), ("receive.denyDeletes", "true"),
                       ("core.logAllRefUpdates", "true"), ("uploadpack.allowReachableSHA1InWant",
                       "true")):  # fmt: skip
        git("config", key, value, cwd=path)
    install_hook(settings, name)
    return path


def keep_quarantined(repo: Path, quarantine: str) -> None:
    """Move what a push brought (still in git's quarantine directory while the pre-receive hook
    runs) into the repository's object store, so the commit survives a rejected push and can
    be read without the hook's environment. What git does after an accepted push, done early:
    packs are copied index last, loose objects one by one; existing files are kept."""
    if not quarantine:
        return
    src = Path(quarantine).resolve()
    objects = (repo / "objects").resolve()
    if not src.is_relative_to(objects) or not src.is_dir():
        raise UsageError(f"{quarantine!r} is not a quarantine directory of {repo.name}.")
    for path in sorted(src.rglob("*"), key=lambda p: (p.suffix == ".idx", str(p))):
        if not path.is_file():
            continue
        dest = objects / path.relative_to(src)
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)


def update_ref(repo: Path, ref: str, commit: str) -> None:
    git("update-ref", ref, commit, cwd=repo)


def resolve(repo: Path, rev: str) -> str:
    return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo)


def commit_message(repo: Path, commit: str) -> str:
    return git("log", "-1", "--format=%B", commit, cwd=repo)


def changed_files(repo: Path, old: str, new: str) -> tuple[str, ...] | None:
    """Paths changed between two commits; None when ``old`` is unknown (the first push of a
    branch, a commit that is not in the repository: everything counts as changed)."""
    if not old or old == ZERO:
        return None
    try:
        git("cat-file", "-e", f"{old}^{{commit}}", cwd=repo)
        out = git("diff", "--name-only", "--no-renames", "-z", old, new, cwd=repo)
    except GitError:
        return None
    return tuple(p for p in out.split("\0") if p)


def export(repo: Path, commit: str, dest: Path) -> None:
    """The tree of ``commit`` written to ``dest`` (git archive: files, links, modes)."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest.parent / f".{dest.name}.tar"
    try:
        with tar.open("wb") as out:
            proc = subprocess.run(
                ["git", "archive", "--format=tar", commit], cwd=repo, stdout=out,
                stderr=subprocess.PIPE, env=_clean_env(), timeout=600, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise GitError(
                f"git archive {commit[:12]} failed: {proc.stderr.decode(errors='replace').strip()}"
            )
        with tarfile.open(tar) as archive:
            archive.extractall(dest, filter="tar")
    finally:
        tar.unlink(missing_ok=True)


# -- mirrors of watched repositories -------------------------------------------------------------


def mirror_path(settings: Settings, url: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-")[-40:]
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return settings.home / "git-mirrors" / f"{slug}-{digest}.git"


def fetch_mirror(settings: Settings, url: str, branch: str) -> tuple[Path, str]:
    """Fetch ``branch`` of ``url`` into its mirror; (mirror, the branch's commit)."""
    path = mirror_path(settings, url)
    if not (path / "HEAD").exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        git("init", "--quiet", "--bare", str(path))
    ref = f"refs/heads/{branch}"
    git("fetch", "--quiet", "--no-tags", "--force", "--", url, f"+{ref}:{ref}", cwd=path,
        timeout=600)  # fmt: skip
    return path, resolve(path, ref)


def remote_head(url: str, branch: str) -> str:
    """The commit ``branch`` of ``url`` points at ("" when the branch does not exist)."""
    out = git("ls-remote", "--", url, f"refs/heads/{branch}", timeout=60)
    return out.split()[0] if out else ""
