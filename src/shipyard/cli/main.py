"""The `shipyard` command. The one place that maps errors to exit codes."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import click

from shipyard import __version__
from shipyard.cli.common import client, json_option, settings
from shipyard.cli.cron import register as register_cron_commands
from shipyard.cli.cron import summary as cron_summary
from shipyard.cli.daemonctl import health, other_shipyard, same_home, start_detached
from shipyard.cli.data import register as register_data_commands
from shipyard.cli.git import register as register_git_commands
from shipyard.cli.output import (
    ago,
    emit_json,
    failure_summary,
    print_event,
    print_plan,
    table,
)
from shipyard.cli.promote import register as register_promote_command
from shipyard.client import Client
from shipyard.clock import SystemClock, poll_until
from shipyard.errors import (
    DaemonUnavailable,
    ShipyardError,
    UsageError,
    error_from_dict,
)


class Group(click.Group):
    """Suggests the closest command for a typo and turns ShipyardError into exit codes."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="shipyard")
def cli() -> None:
    """Shipyard: deploy Render Blueprints on a machine you own."""


@cli.command()
@click.option("-d", "--detach", is_flag=True, help="Run the daemon in the background.")
def up(detach: bool) -> None:
    """Start the Shipyard daemon (API, HAProxy edge, supervisor)."""
    cfg = settings()
    if not detach:
        from shipyard.controlplane.daemon import run_daemon

        run_daemon(cfg)
        return
    running = health(cfg)
    if running is not None and same_home(running, cfg):
        click.echo(f"Shipyard is already running ({cfg.api_url}, pid {running.pid}).")
        return
    pid = start_detached(cfg)
    click.echo(
        f"Shipyard is up (pid {pid}): API {cfg.api_url}, "
        f"apps on http://<service>.localhost:{cfg.http_port}"
    )


@cli.command()
def down() -> None:
    """Stop every instance, HAProxy and the daemon."""
    cfg = settings()
    running = health(cfg)
    if running is not None and running.home is not None and not same_home(running, cfg):
        raise other_shipyard(cfg, running)
    with Client(cfg, timeout=5) as c:
        try:
            c.shutdown(stop_services=True)
        except DaemonUnavailable:
            from shipyard.controlplane.offline import stop_everything

            count = stop_everything(cfg)
            click.echo(f"Daemon was not running; stopped {count} instance(s) and HAProxy.")
            return
        if poll_until(SystemClock(), lambda: health(cfg) is None, timeout_s=90, interval_s=0.3):
            click.echo("Shipyard is down.")
            return
    raise ShipyardError("The daemon did not stop within 90 s.")


def _wait_and_report(c: Client, op_id: int, as_json: bool) -> None:
    final = c.wait(op_id, on_event=None if as_json else print_event)
    if as_json:
        emit_json(final)
    if final.status != "succeeded":
        # The operation's own error class decides the exit code (build failed: 10, deploy
        # failed: 11, ...), so scripts can tell them apart.
        detail = final.error if as_json else failure_summary(final)
        raise error_from_dict(
            {"code": final.error_code or "error", "msg": f"Operation #{op_id} failed: {detail}"}
        )
    if not as_json:
        click.secho(f"Operation #{op_id} succeeded.", fg="green")


@cli.command()
@click.option("-f", "--file", "blueprint", help="Blueprint file or directory (default: .).")
@click.option("--repo", help="Deploy from this git repository instead of a directory.")
@click.option("--branch", default=None, help="Branch of --repo (default: main).")
@click.option("-s", "--service", "services", multiple=True, help="Deploy only these services.")
@click.option("--wait", is_flag=True, help="Return when the rollout finished; fail if it failed.")
@click.option("--adopt", is_flag=True, help="Take over services another Blueprint created.")
@click.option("--prune", is_flag=True, help="Remove the services this Blueprint created and no "
              "longer lists (after a successful deploy).")  # fmt: skip
@click.option("--clear-cache", is_flag=True, help="Build without the build cache (npm, yarn, "
              "pnpm, pip, uv, poetry caches), then keep the new one.")  # fmt: skip
@json_option
def deploy(
    blueprint: str | None,
    repo: str | None,
    branch: str | None,
    services: tuple[str, ...],
    wait: bool,
    adopt: bool,
    prune: bool,
    clear_cache: bool,
    as_json: bool,
) -> None:
    """Build and roll out every service of a Blueprint."""
    if branch and not repo:
        raise UsageError("--branch needs --repo.")
    path = blueprint if repo else str(Path(blueprint or ".").absolute())
    if path and not repo:
        _check_locally(path)
    with client() as c:
        op = c.deploy(path, repo, branch, list(services) or None, adopt=adopt, prune=prune,
                      clear_cache=clear_cache)  # fmt: skip
        if not as_json:
            print_plan(op)
            click.echo(f"Deploy #{op.id} started.")
        if wait:
            _wait_and_report(c, op.id, as_json)
            if not as_json:
                _print_urls(c, [s.service for s in op.steps])
        elif as_json:
            emit_json(op)
        else:
            click.echo(f"Follow it with: shipyard deploy-status {op.id} --wait")


def _check_locally(path: str) -> None:
    """Load the Blueprint here first, within the limits (SHIPYARD_BLUEPRINT_MAX_*): bad input is
    refused before anything reaches the daemon, which checks it again. A path that does not
    exist is left to the daemon to report."""
    from shipyard.blueprint import BlueprintLimits, find_blueprint, load_blueprint

    target = Path(path)
    if target.is_dir():
        target = find_blueprint(target)
    elif not target.is_file():
        return
    load_blueprint(target, BlueprintLimits.from_env(os.environ))


def _print_urls(c: Client, names: list[str]) -> None:
    for svc in c.services():
        if svc.name in names and svc.url:
            click.echo(f"  {svc.name}: {svc.url}")


@cli.command("deploy-status")
@click.argument("deploy_id", type=int)
@click.option("--wait", is_flag=True, help="Follow until the operation finishes.")
@json_option
def deploy_status(deploy_id: int, wait: bool, as_json: bool) -> None:
    """Show (or follow) one deploy, rollback or scale operation."""
    with client() as c:
        if wait:
            _wait_and_report(c, deploy_id, as_json)
            return
        data = c.events(deploy_id)
        if as_json:
            emit_json(data)
            return
        for event in data.events:
            print_event(event)
        click.echo(f"Operation #{deploy_id}: {data.deploy.status}")


@cli.command()
@click.option("-f", "--file", "blueprint", help="Blueprint file or directory (default: .).")
@click.option("--repo")
@click.option("--branch", default=None)
@json_option
def plan(blueprint: str | None, repo: str | None, branch: str | None, as_json: bool) -> None:
    """Show what a deploy of this Blueprint would change."""
    path = blueprint if repo else str(Path(blueprint or ".").absolute())
    if path and not repo:
        _check_locally(path)
    with client() as c:
        result = c.plan(path, repo, branch)
    if as_json:
        emit_json(result)
    else:
        print_plan(result)


@cli.command()
@click.argument("service", required=False)
@json_option
def ps(service: str | None, as_json: bool) -> None:
    """List services and their instances."""
    with client() as c:
        services = [c.service(service)] if service else c.services()
        disk = c.health().disk
    if as_json:
        emit_json(services)
        return
    if disk is not None and disk.low:
        click.secho(f"warning: low disk space: {disk.summary}; deploys are refused", fg="yellow")
    rows = [
        [
            s.name,
            s.type,
            "failed, never served" if s.never_served else s.status,
            s.current_release or "-",
            f"{s.running_instances}/{s.desired_instances}",
            s.url or "",
        ]
        for s in services
    ]
    headers = ["SERVICE", "TYPE", "STATUS", "RELEASE", "INSTANCES", "URL"]
    if any(s.environment for s in services):  # Blueprint projects: show each one's environment
        headers.insert(2, "ENVIRONMENT")
        for row, s in zip(rows, services, strict=True):
            row.insert(2, s.environment or "-")
    click.echo(table(headers, rows))
    for s in services:
        if s.last_failure:
            click.echo(f"  {s.name}: {s.last_failure} (log: shipyard logs {s.name} --build)")
        if s.cron is not None:
            click.echo(f"  {s.name}: {cron_summary(s.cron)}")
    inst_rows = [
        [
            i.id,
            i.summary or i.state,
            i.port,
            i.pid,
            i.restarts,
            i.last_exit or "-",
            ago(i.started_at),
        ]
        for s in services
        for i in s.instances
    ]
    if inst_rows:
        click.echo()
        click.echo(
            table(
                ["INSTANCE", "STATE", "PORT", "PID", "RESTARTS", "LAST EXIT", "STARTED"], inst_rows
            )
        )


@cli.command()
@click.argument("service")
@json_option
def releases(service: str, as_json: bool) -> None:
    """List a service's releases with their status."""
    with client() as c:
        rows = c.releases(service)
    if as_json:
        emit_json(rows)
        return
    click.echo(
        table(
            ["", "RELEASE", "STATUS", "COMMIT", "CREATED", "REASON"],
            [
                [
                    "*" if r.current else "",
                    r.number,
                    r.status,
                    (r.git_commit or "-")[:10],
                    ago(r.created_at),
                    r.reason,
                ]
                for r in rows
            ],
        )
    )


@cli.command()
@click.argument("service")
@click.option("--to", type=int, help="Release number (default: the last good one before).")
@click.option("--wait/--no-wait", default=True, show_default=True)
@json_option
def rollback(service: str, to: int | None, wait: bool, as_json: bool) -> None:
    """Roll out an earlier release again, without rebuilding."""
    with client() as c:
        op = c.rollback(service, to)
        if not as_json:
            click.echo(f"Rolling {service} back to release {op.release} (#{op.id}).")
        if wait:
            _wait_and_report(c, op.id, as_json)
        elif as_json:
            emit_json(op)


@cli.command()
@click.argument("assignment", metavar="SERVICE=N")
@click.option("--wait/--no-wait", default=True, show_default=True)
@json_option
def scale(assignment: str, wait: bool, as_json: bool) -> None:
    """Set a service's number of instances."""
    name, sep, count = assignment.partition("=")
    if not sep or not name or not count.isdigit():
        raise UsageError(f"Expected SERVICE=N (e.g. web=3), got {assignment!r}.")
    with client() as c:
        op = c.scale(name, int(count))
        if wait:
            _wait_and_report(c, op.id, as_json)
        elif as_json:
            emit_json(op)


@cli.command()
@click.argument("service")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--build", is_flag=True, help="Build (and pre-deploy) output instead of runtime.")
@click.option("-n", "--lines", default=100, show_default=True, type=click.IntRange(1, 10000))
@click.option("--release", type=int, help="Only this release.")
@json_option
def logs(
    service: str, follow: bool, build: bool, lines: int, release: int | None, as_json: bool
) -> None:
    """Show a service's logs."""
    with client() as c:
        if follow:
            for line in c.follow_logs(service, build=build, lines=lines, release=release):
                click.echo(line)
            return
        out = c.logs(service, build=build, lines=lines, release=release)
    if as_json:
        emit_json(out)
    else:
        for line in out:
            click.echo(line)


register_data_commands(cli)
register_cron_commands(cli)
register_git_commands(cli)
register_promote_command(cli)


def main() -> None:
    cli(prog_name="shipyard")


if __name__ == "__main__":
    main()
