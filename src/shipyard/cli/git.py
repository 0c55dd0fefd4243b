"""Commands of the triggers: `shipyard remote add` (git push to deploy) and `shipyard hooks`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from shipyard.cli.common import client, json_option
from shipyard.errors import UsageError
from shipyard.triggers.models import RepoBody


def _git(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise UsageError(f"git {' '.join(args[:2])} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def register(cli: click.Group) -> None:
    @cli.group()
    def remote() -> None:
        """A git remote served by Shipyard: `git push shipyard main` deploys."""

    @remote.command("add")
    @click.option("--name", "remote_name", default="shipyard", show_default=True,
                  help="The git remote's name in this repository.")  # fmt: skip
    @click.option("--repo-name", default=None, help="Shipyard's repository name (default: "
                  "this directory's name).")  # fmt: skip
    @click.option("--branch", default=None, help="The branch whose pushes deploy (default: "
                  "the current branch, else main).")  # fmt: skip
    @click.option("--http", "over_http", is_flag=True, help="Push over HTTP through the "
                  "public listener (token auth) instead of the local path.")  # fmt: skip
    @json_option
    def remote_add(remote_name: str, repo_name: str | None, branch: str | None,
                   over_http: bool, as_json: bool) -> None:  # fmt: skip
        """Add a git remote that deploys what is pushed to it (run inside a git repository)."""
        top = _git("rev-parse", "--show-toplevel")
        if branch is None:
            current = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=top,
                                     capture_output=True, text=True, check=False)  # fmt: skip
            branch = current.stdout.strip() or "main"
        with client() as c:
            repo = c.add_repo(RepoBody(work_dir=top, name=repo_name, branch=branch))
        url = repo.path
        if over_http:
            # the push token in the remote's URL (kept in this repository's .git/config only)
            url = repo.http_url.replace("http://", f"http://shipyard:{repo.push_token}@", 1)
            host, _, port = repo.http_url.split("/")[2].partition(":")
            if host.endswith(".localhost"):  # *.localhost may not resolve on this machine
                _git("config", "http.curloptResolve", f"{host}:{port or 80}:127.0.0.1",
                     cwd=Path(top))  # fmt: skip
        existing = subprocess.run(["git", "remote", "get-url", remote_name], cwd=top,
                                  capture_output=True, text=True, check=False)  # fmt: skip
        if existing.returncode == 0:
            _git("remote", "set-url", remote_name, url, cwd=Path(top))
        else:
            _git("remote", "add", remote_name, url, cwd=Path(top))
        if as_json:
            click.echo(repo.model_dump_json(indent=2))
            return
        click.echo(f"Added git remote '{remote_name}' -> {url}")
        click.echo(f"Deploy with: git push {remote_name} {repo.branch}")

    @cli.group()
    def hooks() -> None:
        """A service's deploy hook and webhook URLs (GitHub, GitLab)."""

    def _show(service: str, rotate: bool, as_json: bool) -> None:
        with client() as c:
            view = c.hooks(service, rotate=rotate)
        if as_json:
            click.echo(view.model_dump_json(indent=2))
            return
        click.echo(f"deploy hook:     {view.deploy_hook_url}")
        click.echo(f"GitHub webhook:  {view.github_webhook_url}  (content type application/json)")
        click.echo(f"GitLab webhook:  {view.gitlab_webhook_url}")
        click.echo(f"webhook secret:  {view.webhook_secret}")

    @hooks.command("show")
    @click.argument("service")
    @json_option
    def hooks_show(service: str, as_json: bool) -> None:
        """Print the deploy hook URL and the webhook URLs with their secret."""
        _show(service, False, as_json)

    @hooks.command("rotate")
    @click.argument("service")
    @json_option
    def hooks_rotate(service: str, as_json: bool) -> None:
        """Replace the deploy hook key and the webhook secret (the old ones stop working)."""
        _show(service, True, as_json)
