"""`shipyard cron ...`: cron jobs' runs (list, run now, logs)."""

from __future__ import annotations

import time
from urllib.parse import quote

import click
from pydantic import TypeAdapter

from shipyard.apimodels import CronJobView, CronRunView, LogLines
from shipyard.cli.common import client, json_option
from shipyard.cli.output import ago, emit_json, table
from shipyard.client import Client

WAIT_POLL_S = 0.5
_RUNS: TypeAdapter[list[CronRunView]] = TypeAdapter(list[CronRunView])


def _path(service: str) -> str:
    return f"/v1/services/{quote(service, safe='')}/cron/runs"


# The cron routes, through the client's request method (errors come back as ShipyardErrors).
def list_runs(c: Client, service: str, limit: int = 50) -> list[CronRunView]:
    return _RUNS.validate_python(c._request("GET", _path(service), params={"limit": limit}))


def trigger_run(c: Client, service: str) -> CronRunView:
    return CronRunView.model_validate(c._request("POST", _path(service)))


def get_run(c: Client, service: str, run_id: int) -> CronRunView:
    return CronRunView.model_validate(c._request("GET", f"{_path(service)}/{run_id}"))


def run_logs(c: Client, service: str, run_id: int, lines: int = 200) -> list[str]:
    body = c._request("GET", f"{_path(service)}/{run_id}/logs", params={"lines": lines})
    return LogLines.model_validate(body).lines


def _duration(run: CronRunView) -> str:
    if run.status == "skipped":
        return "-"
    end = run.finished_at if run.finished_at is not None else time.time()
    return f"{max(0.0, end - run.started_at):.1f}s"


def summary(job: CronJobView) -> str:
    """One line for `ps`: schedule, last and next run."""
    text = f"cron '{job.schedule}' (UTC)"
    if job.running is not None:
        text += f", run #{job.running.id} running (started {ago(job.running.started_at)})"
    if job.last_run is not None and job.last_run is not job.running:
        last = job.last_run
        if last.status != "running":
            code = f", exit {last.exit_code}" if last.exit_code not in (None, 0) else ""
            text += f", last run {last.status}{code} {ago(last.finished_at)}"
    if job.next_run is not None:
        text += f", next {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(job.next_run))}Z"
    return text


def register(cli: click.Group) -> None:
    """Add the cron commands to ``cli``."""

    @cli.group()
    def cron() -> None:
        """Cron jobs (type: cron): their runs."""

    @cron.command("runs")
    @click.argument("service")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
    @json_option
    def runs(service: str, limit: int, as_json: bool) -> None:
        """A cron job's runs, newest first (skipped ones too)."""
        with client() as c:
            found = list_runs(c, service, limit)
        if as_json:
            emit_json(found)
            return
        if not found:
            click.echo(f"{service} has not run yet.")
            return
        rows = [
            [r.id, r.status, r.trigger, r.release if r.release is not None else "-",
             ago(r.started_at), _duration(r), "-" if r.exit_code is None else r.exit_code,
             r.reason or ""]
            for r in found
        ]  # fmt: skip
        click.echo(
            table(["RUN", "STATUS", "TRIGGER", "RELEASE", "STARTED", "TOOK", "EXIT", "NOTE"], rows)
        )

    @cron.command("run")
    @click.argument("service")
    @click.option("--wait", is_flag=True, help="Wait for the run to end; fail if it failed.")
    @click.option("--lines", default=20, show_default=True, type=click.IntRange(1, 10000),
                  help="With --wait: how many of its last log lines to print.")  # fmt: skip
    @json_option
    def run(service: str, wait: bool, lines: int, as_json: bool) -> None:
        """Start a run of SERVICE's live release now (refused while one runs)."""
        with client() as c:
            started = trigger_run(c, service)
            if not wait:
                if as_json:
                    emit_json(started)
                else:
                    follow = f"`shipyard cron runs {service}` follows it"
                    click.echo(f"Started run #{started.id} of {service} (release "
                               f"{started.release}); {follow}.")  # fmt: skip
                return
            final = started
            while final.status == "running":
                time.sleep(WAIT_POLL_S)
                final = get_run(c, service, started.id)
            tail = run_logs(c, service, started.id, lines)
        if as_json:
            emit_json(final)
        else:
            for line in tail:
                click.echo(line)
            code = "" if final.exit_code is None else f" (exit code {final.exit_code})"
            why = f": {final.reason}" if final.reason else ""
            click.echo(f"Run #{final.id} of {service}: {final.status}{code}{why}")
        if final.status != "succeeded":
            raise SystemExit(1)

    @cron.command("logs")
    @click.argument("service")
    @click.argument("run_id", required=False, type=int)
    @click.option("-n", "--lines", default=200, show_default=True, type=click.IntRange(1, 10000))
    @json_option
    def logs(service: str, run_id: int | None, lines: int, as_json: bool) -> None:
        """The log of one run (default: the newest run that started)."""
        with client() as c:
            if run_id is None:
                started = [r for r in list_runs(c, service, 1000) if r.status != "skipped"]
                if not started:
                    click.echo(f"{service} has not run yet.")
                    return
                run_id = started[0].id
            out = run_logs(c, service, run_id, lines)
        if as_json:
            emit_json(out)
            return
        for line in out:
            click.echo(line)
