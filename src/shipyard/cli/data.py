"""`shipyard db ...`, `shipyard psql`, `shipyard redis-cli`: managed datastores."""

from __future__ import annotations

import os
import shutil
import subprocess

import click

from shipyard.apimodels import DatastoreInfo, DatastoreView
from shipyard.cli.common import client, json_option
from shipyard.cli.output import ago, emit_json, table
from shipyard.disk import human
from shipyard.errors import UsageError


def _size(size: int | None) -> str:
    return "-" if size is None else human(size)


def _state(d: DatastoreView) -> str:
    """Its status; "down" when it should run and its server does not."""
    return "down" if d.status == "available" and not d.running else d.status


def _kind(d: DatastoreView) -> str:
    if d.kind == "keyvalue":
        return "keyvalue"
    return "postgres (replica)" if d.primary else "postgres"


def register(cli: click.Group) -> None:
    """Add the datastore commands to ``cli``."""

    @cli.group()
    def db() -> None:
        """Managed PostgreSQL databases and Key Value instances."""

    @db.command("list")
    @json_option
    def list_(as_json: bool) -> None:
        """Every database and Key Value instance."""
        with client() as c:
            found = c.datastores()
        if as_json:
            emit_json(found)
            return
        if not found:
            click.echo("No databases or Key Value instances yet.")
            return
        rows = [
            [d.name, _kind(d), d.version, _state(d), _size(d.size_bytes), d.port,
             ago(d.last_backup)]
            for d in found
        ]  # fmt: skip
        click.echo(
            table(["NAME", "KIND", "VERSION", "STATUS", "SIZE", "PORT", "LAST BACKUP"], rows)
        )

    @db.command()
    @click.argument("name")
    @json_option
    def info(name: str, as_json: bool) -> None:
        """A datastore's connection, state, replication and backups."""
        with client() as c:
            found = c.datastore(name)
        if as_json:
            emit_json(found)
            return
        _print_info(found)

    @db.command()
    @click.argument("name")
    @click.option("-n", "--lines", default=100, show_default=True, type=click.IntRange(1, 10000))
    @json_option
    def logs(name: str, lines: int, as_json: bool) -> None:
        """A datastore server's log (its last lines)."""
        with client() as c:
            out = c.datastore_logs(name, lines)
        if as_json:
            emit_json(out)
        else:
            for line in out:
                click.echo(line)

    @cli.command(context_settings={"ignore_unknown_options": True})
    @click.argument("name")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def psql(name: str, args: tuple[str, ...]) -> None:
        """psql connected to a database as its owner (`shipyard psql db -- -c 'select 1'`)."""
        _run_client(name, list(args), "postgres")

    @cli.command("redis-cli", context_settings={"ignore_unknown_options": True})
    @click.argument("name")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def redis_cli(name: str, args: tuple[str, ...]) -> None:
        """redis-cli connected to a Key Value instance with its password."""
        _run_client(name, list(args), "keyvalue")


def _run_client(name: str, args: list[str], kind: str) -> None:
    with client() as c:
        found = c.datastore(name)
        if found.kind != kind:
            other = "shipyard redis-cli" if found.kind == "keyvalue" else "shipyard psql"
            raise UsageError(f"'{name}' is a {found.kind} datastore: use `{other} {name}`.")
        command = c.datastore_client(name, args)
    if shutil.which(command.argv[0]) is None:
        raise UsageError(f"{command.argv[0]} is not installed on this machine.")
    env = {**os.environ, **command.env}
    raise SystemExit(subprocess.call(command.argv, env=env))


def _print_info(d: DatastoreInfo) -> None:
    rows = [
        ("kind", _kind(d)), ("version", d.version),
        ("status", d.status + (f" ({d.reason})" if d.reason else "")),
        ("running", f"yes (pid {d.pid})" if d.running else "no"),
        ("connection", d.connection_string), ("port", str(d.port)),
    ]  # fmt: skip
    if d.kind == "postgres":
        rows += [("database", d.database or "-"), ("user", d.user or "-")]
        conns = f"{d.connections} of {d.max_connections}" if d.connections is not None else "-"
        rows.append(("connections", conns))
    rows.append(
        ("size", _size(d.size_bytes) + (f" of {d.disk_size_gb} GB" if d.disk_size_gb else ""))
    )
    if d.primary:
        lag = "-" if d.replication_lag_seconds is None else f"{d.replication_lag_seconds:.1f} s"
        rows += [("primary", d.primary), ("replication lag", lag)]
    if d.replicas:
        rows.append(("read replicas", ", ".join(d.replicas)))
    rows.append(("allowed from", ", ".join(d.ip_allow_list) or "this machine only"))
    b = d.backups
    pitr = f", PITR {b.pitr_retention_days} days" if d.kind == "postgres" else ""
    rows.append(("backups", f"{b.schedule} (UTC), kept {b.retention_days} days{pitr}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
