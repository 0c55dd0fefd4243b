"""`shipyard db ...`, `shipyard psql`, `shipyard redis-cli`: managed datastores."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import click

from shipyard.apimodels import DatastoreInfo, DatastoreView, EnvBody, RestoreBody
from shipyard.cli.common import client, json_option
from shipyard.cli.output import ago, emit_json, print_event, table
from shipyard.client import Client
from shipyard.disk import human
from shipyard.errors import UsageError, error_from_dict


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
    @click.option("--full", "kind", flag_value="full", help="PostgreSQL: a full backup.")
    @click.option("--diff", "kind", flag_value="diff", help="PostgreSQL: a differential backup.")
    @click.option("--wait", is_flag=True, help="Return when it finished; fail if it failed.")
    @json_option
    def backup(name: str, kind: str | None, wait: bool, as_json: bool) -> None:
        """Back up a database or Key Value instance now."""
        with client() as c:
            op = c.backup(name, kind)
            if not wait:
                _accepted(op.id, f"backup of {name}", as_json, op.model_dump())
                return
            _wait(c, op.id, as_json)
            runs = c.backups(name).runs
        if as_json:
            emit_json(runs[0] if runs else {})
        elif runs:
            r = runs[0]
            click.echo(f"{', '.join(r.backup_ids)} ({r.kind}, {human(r.size_bytes or 0)} stored)")

    @db.command()
    @click.argument("name")
    @json_option
    def backups(name: str, as_json: bool) -> None:
        """The backups a database or Key Value instance has, and the runs that made them."""
        with client() as c:
            found = c.backups(name)
        if as_json:
            emit_json(found)
            return
        rows = [
            [b.id, b.kind, _when(b.started_at), _when(b.finished_at), _size(b.size_bytes),
             _size(b.stored_bytes), ",".join(b.locations)]
            for b in found.backups
        ]  # fmt: skip
        if not rows:
            click.echo(f"{name} has no backup yet (`shipyard db backup {name}` takes one).")
        else:
            click.echo(table(["ID", "TYPE", "STARTED", "FINISHED", "SIZE", "STORED", "WHERE"],
                             rows))  # fmt: skip
        if found.restorable_since:
            click.echo(f"restorable to any moment since {_when(found.restorable_since)}")
        failed = [r for r in found.runs[:5] if r.status == "failed"]
        for r in failed:
            click.secho(f"failed {r.trigger} backup at {_when(r.started_at)}: {r.error}", fg="red")

    @db.command()
    @click.argument("name")
    @click.option("--to-time", help="Recover to this moment (ISO 8601; UTC unless it says).")
    @click.option("--to-backup", help="Recover to this backup (an ID from `db backups`).")
    @click.option("--latest", is_flag=True, help="Recover the newest state the backups hold.")
    @click.option("--as", "new_name", required=True, help="The NEW datastore to restore into.")
    @click.option("--from", "source", type=click.Choice(["local", "s3"]), default=None,
                  help="Restore from this repository only.")  # fmt: skip
    @click.option("--wait", is_flag=True, help="Return when it finished; fail if it failed.")
    @json_option
    def restore(
        name: str, to_time: str | None, to_backup: str | None, latest: bool, new_name: str,
        source: str | None, wait: bool, as_json: bool,
    ) -> None:  # fmt: skip
        """Restore into a NEW datastore (the original is untouched)."""
        given = [x for x in (to_time, to_backup, latest or None) if x is not None]
        if len(given) != 1:
            raise UsageError("Give exactly one of --to-time, --to-backup, --latest.")
        body = RestoreBody(new_name=new_name, to_time=to_time, to_backup=to_backup,
                           latest=latest, source=source)  # fmt: skip
        with client() as c:
            op = c.restore(name, body)
            if not wait:
                _accepted(op.id, f"restore of {name} as {new_name}", as_json, op.model_dump())
                return
            _wait(c, op.id, as_json)
            info = c.datastore(new_name)
        if as_json:
            emit_json(info)
        else:
            click.echo(f"{new_name} is available: {info.connection_string}")

    @db.command()
    @click.argument("name")
    @click.option("--wait", is_flag=True, help="Return when it finished; fail if it failed.")
    @json_option
    def drill(name: str, wait: bool, as_json: bool) -> None:
        """Prove the backups: restore the latest into a throwaway server and check it."""
        with client() as c:
            before = max((d.id for d in c.drills(name)), default=0)
            op = c.drill(name)
            if not wait:
                _accepted(op.id, f"drill of {name}", as_json, op.model_dump())
                return
            final = c.wait(op.id, on_event=None if as_json else print_event)
            result = [d for d in c.drills(name) if d.id > before]
        latest = result[0] if result else None
        if as_json and latest is None:
            emit_json({"ok": False, "error": final.error, "recovery_point_seconds": None,
                       "restore_seconds": None})  # fmt: skip
            latest = None
        if as_json and latest is not None:
            emit_json(latest)
        elif latest is not None and latest.ok:
            click.secho(f"drill passed: recovery point {latest.recovery_point_seconds:.1f} s, "
                        f"restore {latest.restore_seconds:.1f} s", fg="green")  # fmt: skip
        if final.status != "succeeded":
            raise error_from_dict({"code": final.error_code or "error",
                                   "msg": f"Drill failed: {final.error}"})  # fmt: skip

    @db.command()
    @click.argument("name")
    @click.option("--yes", is_flag=True, help="Confirm: its data is destroyed.")
    @json_option
    def delete(name: str, yes: bool, as_json: bool) -> None:
        """Delete a datastore: its server and data. Its backups are kept for its retention."""
        if not yes:
            raise UsageError(f"Deleting '{name}' destroys its data: add --yes to confirm.")
        with client() as c:
            done = c.delete_datastore(name)
        if as_json:
            emit_json(done)
        else:
            kept = _when(done.backups_kept_until) if done.backups_kept_until else "-"
            click.echo(f"{name} deleted; its backups are kept until {kept} as "
                       f"'{done.datastore}'.")  # fmt: skip

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

    @cli.group()
    def env() -> None:
        """A service's environment variables: list, set, unset."""

    @env.command("list")
    @click.argument("service")
    @click.option("--reveal", is_flag=True, help="Show the values (they are secrets).")
    @json_option
    def env_list(service: str, reveal: bool, as_json: bool) -> None:
        """The live release's variables (values masked unless --reveal)."""
        with client() as c:
            found = c.env(service, reveal)
        if as_json:
            emit_json(found)
            return
        click.echo(table(["KEY", "SOURCE", "VALUE"],
                         [[e.key, e.source, e.value] for e in found.entries]))  # fmt: skip

    @env.command("set")
    @click.argument("service")
    @click.argument("pairs", nargs=-1, required=True)
    @click.option("--group", help="Set them in this env group instead.")
    @click.option("--no-deploy", is_flag=True, help="Only record them (the next deploy uses them).")
    @click.option("--wait", is_flag=True, help="Wait for the rollout of the new release.")
    def env_set(service: str, pairs: tuple[str, ...], group: str | None, no_deploy: bool,
                wait: bool) -> None:  # fmt: skip
        """Set KEY=VALUE pairs; rolls out a new release with them (no rebuild)."""
        values: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(f"{pair!r} is not KEY=VALUE.")
            values[key] = value
        _change_env(service, EnvBody(set=values, deploy=not no_deploy, group=group), wait)

    @env.command("unset")
    @click.argument("service")
    @click.argument("keys", nargs=-1, required=True)
    @click.option("--group", help="Unset them in this env group instead.")
    @click.option("--no-deploy", is_flag=True, help="Only record it (the next deploy uses it).")
    @click.option("--wait", is_flag=True, help="Wait for the rollout of the new release.")
    def env_unset(service: str, keys: tuple[str, ...], group: str | None, no_deploy: bool,
                  wait: bool) -> None:  # fmt: skip
        """Remove values set with `env set`; rolls out a new release without them."""
        _change_env(service, EnvBody(unset=list(keys), deploy=not no_deploy, group=group), wait)

    @env.command("rotate")
    @click.argument("service")
    @click.argument("key")
    @click.option("--wait", is_flag=True, help="Wait for the rollout of the new release.")
    def env_rotate(service: str, key: str, wait: bool) -> None:
        """A new value for a generateValue variable, rolled out (no rebuild)."""
        with client() as c:
            changed = c.rotate_env(service, key)
            assert changed.id is not None
            if wait:
                _wait(c, changed.id, False)
                click.secho(f"{service} runs with the new {key}.", fg="green")
            else:
                click.echo(f"Rolling out the new {key} (operation #{changed.id}).")

    @cli.group()
    def secrets() -> None:
        """The key every stored secret is encrypted with."""

    @secrets.command("rotate-key")
    def rotate_key() -> None:
        """A new key: every stored secret re-encrypted with it, the old key dropped."""
        with client() as c:
            done = c.rotate_key()
        click.echo(f"New key in SHIPYARD_HOME/secret.key; {done.values} stored values "
                   "re-encrypted with it.")  # fmt: skip

    @cli.group()
    def disk() -> None:
        """Services' persistent disks: snapshots and restores."""

    @disk.command("snapshots")
    @click.argument("service")
    @json_option
    def disk_snapshots(service: str, as_json: bool) -> None:
        """A service's disk snapshots (daily, kept 7 days, and those taken on request)."""
        with client() as c:
            found = c.disk_snapshots(service)
        if as_json:
            emit_json(found)
            return
        if not found:
            click.echo(f"{service} has no disk snapshot yet (`shipyard disk snapshot {service}`).")
            return
        rows = [[s.id, s.disk, _when(s.created_at), _size(s.used_bytes), _size(s.size_bytes),
                 s.trigger] for s in found]  # fmt: skip
        click.echo(table(["ID", "DISK", "TAKEN", "DATA", "STORED", "TRIGGER"], rows))

    @disk.command("snapshot")
    @click.argument("service")
    @json_option
    def disk_snapshot(service: str, as_json: bool) -> None:
        """Take a snapshot of a service's disk now (the service keeps running)."""
        with client(timeout=3600.0) as c:  # a large disk takes a while
            snap = c.disk_snapshot(service)
        if as_json:
            emit_json(snap)
        else:
            click.echo(f"snapshot {snap.id} of {service}'s disk: {_size(snap.used_bytes)} of "
                       f"data, {_size(snap.size_bytes)} stored")  # fmt: skip

    @disk.command("restore")
    @click.argument("service")
    @click.option("--snapshot", "snapshot", required=True, help="A snapshot ID.")
    @click.option("--wait/--no-wait", default=True, show_default=True)
    @json_option
    def disk_restore(service: str, snapshot: str, wait: bool, as_json: bool) -> None:
        """Replace a service's disk with a snapshot (its instance stops meanwhile)."""
        with client() as c:
            op = c.disk_restore(service, snapshot)
            if not wait:
                _accepted(op.id, f"disk restore of {service}", as_json, op.model_dump())
                return
            _wait(c, op.id, as_json)
        if as_json:
            emit_json(op)
        else:
            click.echo(f"{service}'s disk is back to snapshot {snapshot}.")

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


def _change_env(service: str, body: EnvBody, wait: bool) -> None:
    with client() as c:
        changed = c.set_env(service, body)
        if changed.id is None:
            click.echo("Recorded; the next deploy uses it.")
            return
        if len(changed.operations) > 1:  # an env group used by several services
            for op in changed.operations:
                if wait:
                    _wait(c, op, False)
            ops = ", ".join(f"#{o}" for o in changed.operations)
            click.echo(f"Rolling out {len(changed.operations)} services with the group's new "
                       f"env (operations {ops}).")  # fmt: skip
            return
        if wait:
            _wait(c, changed.id, False)
            click.secho(f"{service} runs the new env.", fg="green")
        else:
            click.echo(f"Rolling out {service} with the new env (operation #{changed.id}); "
                       f"follow it with `shipyard deploy-status {changed.id} --wait`.")  # fmt: skip


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else "-"


def _accepted(op_id: int, what: str, as_json: bool, data: dict[str, object]) -> None:
    if as_json:
        emit_json(data)
    else:
        click.echo(f"Started the {what} (operation #{op_id}); follow it with "
                   f"`shipyard deploy-status {op_id} --wait`.")  # fmt: skip


def _wait(c: Client, op_id: int, as_json: bool) -> None:
    final = c.wait(op_id, on_event=None if as_json else print_event)
    if final.status != "succeeded":
        raise error_from_dict(
            {"code": final.error_code or "error", "msg": f"Operation #{op_id} failed: "
             f"{final.error}"}
        )  # fmt: skip


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
    if d.restorable_since:
        rows.append(("restorable since", _when(d.restorable_since)))
    rows.append(("last backup", f"{_when(d.last_backup)} ({d.last_backup_status or 'none'})"))
    archiver = d.details.get("archiver") or {}
    if archiver:
        failed = archiver.get("failed_count") or 0
        last = _when(archiver.get("last_archived_time"))
        state = f"{archiver.get('archived_count', 0)} segments archived, last {last}"
        if failed and (archiver.get("last_failed_time") or 0) > (
            archiver.get("last_archived_time") or 0
        ):
            state += (
                f"; FAILING since {_when(archiver.get('last_failed_time'))} ({failed} failures)"
            )
        rows.append(("WAL archive", state))
    if d.last_drill is not None:
        drill_ = d.last_drill
        verdict = (f"passed, recovery point {drill_.recovery_point_seconds:.1f} s" if drill_.ok
                   else f"failed: {drill_.error}")  # fmt: skip
        rows.append(("last drill", f"{_when(drill_.started_at)} {verdict}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
