"""The PostgreSQL engine (implements data/engines.py's DatastoreEngine) on the Debian packages.

Files of a database ``ds`` (under ``ds.dir``, SHIPYARD_HOME/data/<name>):

* ``pgdata/`` the cluster, owned by the server's account (``postgres`` when Shipyard is root,
  since PostgreSQL refuses to run as root; else Shipyard's own), mode 0700;
* the unix socket directory (``run/``, or a short one under /tmp when the path would pass the
  107-byte limit of socket paths), owned by the account;
* ``log/`` the server's log directory, kept by its log writer.

Shipyard reaches the superuser over the socket (peer authentication, pg_ident map); apps use
the owner role over TCP with scram-sha-256. Passwords are set as SCRAM verifiers computed
here, so no statement ever carries a password in clear.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from shipyard.blueprint.spec import DatastoreSpec
from shipyard.data.engines import BackupEntry, DatastoreFacts, RestorePoint
from shipyard.drivers.local.users import (
    Account,
    current,
    ensure_reachable,
    give,
    popen_kwargs,
    service_account,
)
from shipyard.drivers.pgbackrest.engine import BackupInfo, RestoreTarget
from shipyard.drivers.postgres.backups import PgBackRestArchive
from shipyard.drivers.postgres.config import (
    HEARTBEAT_SCHEMA,
    REPLICATION_ROLE,
    SUPERUSER,
    ServerConfig,
    hba_conf,
    ident_conf,
    plan_memory_mb,
    server_conf,
)
from shipyard.errors import RuntimeFailure, UsageError
from shipyard.records import Datastore
from shipyard.run.runtime import ProcessSpec

log = logging.getLogger("shipyard.postgres")
LIB_DIR = Path("/usr/lib/postgresql")
SOCKET_PATH_MAX = 107 - len("/.s.PGSQL.65535")
INCLUDE_LINE = "include_if_exists = 'shipyard.conf'"
_TOOL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Layout:
    dir: Path
    pgdata: Path
    socket_dir: Path


def layout(ds: Datastore) -> Layout:
    base = Path(ds.dir)
    socket_dir = base / "run"
    if len(str(socket_dir).encode()) > SOCKET_PATH_MAX:  # the limit is in bytes
        digest = hashlib.sha256(str(base).encode()).hexdigest()[:12]
        socket_dir = Path("/tmp") / f"shipyard-pg-{digest}"
    return Layout(base, base / "pgdata", socket_dir)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a scram-sha-256 password (RFC 5802/7677)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def new_password() -> str:
    """URL-safe (it goes into connection strings as is), 192 bits."""
    return secrets.token_urlsafe(24)


class PostgresEngine:
    kind = "postgres"
    stop_signal = int(signal.SIGINT)  # fast shutdown: sessions ended, a clean checkpoint
    stop_grace_s = 60.0

    def __init__(self, lib_dir: Path = LIB_DIR, archive: PgBackRestArchive | None = None) -> None:
        self.lib_dir = lib_dir
        self.archive = archive

    # -- versions ----------------------------------------------------------------------------

    def installed(self) -> dict[str, Path]:
        """Installed major versions -> their bin directory."""
        found = {}
        with contextlib.suppress(OSError):
            for entry in self.lib_dir.iterdir():
                if entry.name.isdigit() and (entry / "bin" / "postgres").is_file():
                    found[entry.name] = entry / "bin"
        return dict(sorted(found.items(), key=lambda kv: int(kv[0])))

    def version_for(self, spec: DatastoreSpec) -> str:
        installed = self.installed()
        if not installed:
            raise UsageError(
                f"database '{spec.name}': PostgreSQL is not installed on this machine "
                f"({self.lib_dir} has no server); install it with `apt-get install postgresql` "
                "(scripts/install-system.sh does)",
                fields={"datastore": spec.name},
            )
        if spec.version is None:
            return list(installed)[-1]
        wanted = spec.version.strip()
        if wanted not in installed:
            raise UsageError(
                f"database '{spec.name}': postgresMajorVersion {wanted} is not installed on "
                f"this machine (installed: {', '.join(installed)}). Install it with "
                f"`apt-get install postgresql-{wanted}` (versions Debian does not ship come "
                f"from apt.postgresql.org), or set postgresMajorVersion: {list(installed)[-1]}",
                fields={"datastore": spec.name, "version": wanted, "installed": list(installed)},
            )
        return wanted

    def check(self, spec: DatastoreSpec) -> None:
        self.version_for(spec)

    def _bin(self, ds: Datastore, tool: str) -> str:
        bindir = self.installed().get(ds.version)
        if bindir is None:
            raise RuntimeFailure(
                f"{ds.label}: PostgreSQL {ds.version} is no longer installed "
                f"(apt-get install postgresql-{ds.version})",
                fields={"datastore": ds.name},
            )
        return str(bindir / tool)

    # -- files -------------------------------------------------------------------------------

    def account(self) -> Account:
        return service_account("postgres")

    def new_secrets(self, spec: DatastoreSpec) -> dict[str, str]:
        return {
            "password": new_password(),
            "replication_password": new_password(),
            "backup_cipher": secrets.token_urlsafe(32),  # the backup repositories' passphrase
        }

    def provision(
        self, ds: Datastore, secrets: Mapping[str, str], primary: Datastore | None
    ) -> None:
        acct = self.account()
        where = layout(ds)
        where.dir.mkdir(parents=True, exist_ok=True)
        where.dir.chmod(0o711)
        ensure_reachable(where.dir, acct)
        if where.socket_dir.is_symlink():
            raise RuntimeFailure(f"{where.socket_dir} is a symlink: refusing to use it as "
                                 f"{ds.label}'s socket directory")  # fmt: skip
        give(where.socket_dir, acct, 0o700)
        if not (where.pgdata / "PG_VERSION").is_file():
            if ds.origin not in ("blueprint", "drill") and primary is None:
                raise RuntimeFailure(
                    f"{ds.label} was restored, and its files are incomplete: delete it and "
                    "restore again", fields={"datastore": ds.name},
                )  # fmt: skip
            if where.pgdata.exists():  # a half-made cluster (a kill during initdb): redo it
                _remove_tree(where.pgdata)
            if primary is None:
                self._initdb(ds, where, acct)
            else:
                self._base_backup(ds, where, acct, primary, secrets)
        self.write_config(ds)

    def write_config(self, ds: Datastore) -> None:
        acct = self.account()
        where = layout(ds)
        cfg = ServerConfig(
            port=ds.port,
            socket_dir=str(where.socket_dir),
            memory_mb=plan_memory_mb(ds.spec.plan),
            allow=ds.spec.ip_allow_list,
            archive_command=self.archive.archive_command(ds) if self.archive else None,
            replica=ds.spec.primary is not None,
        )
        if self.archive is not None:
            self.archive.write(ds, where.socket_dir, where.pgdata)
        _write_owned(where.pgdata / "shipyard.conf", server_conf(cfg), acct)
        _write_owned(where.pgdata / "pg_hba.conf", hba_conf(ds.spec.ip_allow_list), acct)
        users = [acct.name, current().name]
        _write_owned(where.pgdata / "pg_ident.conf", ident_conf(users), acct)
        main = where.pgdata / "postgresql.conf"
        text = main.read_text()
        if INCLUDE_LINE not in text:
            _write_owned(main, text.rstrip("\n") + f"\n\n{INCLUDE_LINE}\n", acct)

    def _initdb(self, ds: Datastore, where: Layout, acct: Account) -> None:
        give(where.pgdata, acct, 0o700)
        self._tool(
            ds, acct,
            [self._bin(ds, "initdb"), "-D", str(where.pgdata), "-U", SUPERUSER,
             "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8",
             "--locale=C.UTF-8", "--data-checksums"],
            {},
        )  # fmt: skip

    def _base_backup(
        self, ds: Datastore, where: Layout, acct: Account, primary: Datastore,
        secrets: Mapping[str, str],
    ) -> None:  # fmt: skip
        give(where.pgdata, acct, 0o700)
        slot = replication_slot(ds.name)
        self.drop_slot(primary, ds.name)  # a half-made earlier replica of this name left it
        self._tool(
            ds, acct,
            [self._bin(ds, "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
             "-U", REPLICATION_ROLE, "-D", str(where.pgdata), "-X", "stream", "-R",
             "-C", "-S", slot, "-c", "fast", "--no-password"],
            {"PGPASSWORD": secrets["replication_password"]},
        )  # fmt: skip

    def _tool(
        self, ds: Datastore, acct: Account, argv: list[str], extra: Mapping[str, str]
    ) -> None:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **extra}
        try:
            done = subprocess.run(
                argv, cwd="/", env=env, capture_output=True, text=True,
                timeout=_TOOL_TIMEOUT_S, check=False, **popen_kwargs(acct.name),
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeFailure(f"{ds.label}: {Path(argv[0]).name} failed: {exc}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeFailure(
                f"{ds.label}: {Path(argv[0]).name} exited with code {done.returncode}: "
                + " / ".join(detail),
                fields={"datastore": ds.name},
            )

    # -- the server --------------------------------------------------------------------------

    def process(self, ds: Datastore, secrets: Mapping[str, str], log_dir: Path) -> ProcessSpec:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        if self.archive is not None:
            env.update(self.archive.server_env(ds, secrets))
        server, pgdata = self._bin(ds, "postgres"), str(layout(ds).pgdata)
        command = f"exec {shlex.quote(server)} -D {shlex.quote(pgdata)}"
        return ProcessSpec(command, Path("/"), env, log_dir, user=self.account().name)

    def connect(self, ds: Datastore, dbname: str = "postgres", timeout_s: int = 3) -> Any:
        """A superuser connection over the unix socket (autocommit)."""
        return psycopg.connect(
            host=str(layout(ds).socket_dir), port=ds.port, user=SUPERUSER, dbname=dbname,
            connect_timeout=timeout_s, autocommit=True, application_name="shipyard",
        )  # fmt: skip

    def wait_ready(
        self, ds: Datastore, secrets: Mapping[str, str], timeout_s: float,
        alive: Callable[[], bool],
    ) -> None:  # fmt: skip
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeFailure(
                    f"{ds.label}: the server exited while starting ({last}); see "
                    f"`shipyard db logs {ds.name}`",
                    fields={"datastore": ds.name},
                )
            try:
                with self.connect(ds, timeout_s=2) as conn:
                    recovering = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if not recovering or ds.spec.primary is not None:
                    return
                last = "still recovering"
            except psycopg.Error as exc:
                last = _first_line(exc)
            time.sleep(0.1)
        raise RuntimeFailure(
            f"{ds.label}: not ready after {timeout_s:g} s ({last})", fields={"datastore": ds.name}
        )

    def configure(self, ds: Datastore, secrets: Mapping[str, str]) -> None:
        if ds.spec.primary is not None:
            return  # a replica is read-only: it has what its primary has
        spec = ds.spec
        try:
            with self.connect(ds) as conn:
                _ensure_role(conn, REPLICATION_ROLE, secrets["replication_password"],
                             "REPLICATION LOGIN")  # fmt: skip
                _ensure_role(conn, spec.user, secrets["password"], "LOGIN")
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (spec.database_name,)
                ).fetchone()
                if not exists:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(spec.database_name), sql.Identifier(spec.user)
                        )
                    )
            with self.connect(ds, spec.database_name) as conn:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                        sql.Identifier(HEARTBEAT_SCHEMA), sql.Identifier(SUPERUSER)
                    )
                )
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.heartbeat "
                        "(id int PRIMARY KEY, ts timestamptz NOT NULL)"
                    ).format(sql.Identifier(HEARTBEAT_SCHEMA))
                )
        except psycopg.Error as exc:
            raise RuntimeFailure(f"{ds.label}: cannot configure: {_first_line(exc)}") from exc
        if self.archive is not None and self.archive.archive_command(ds) is not None:
            tool = self.archive.tool(ds, secrets)
            try:
                tool.stanza_create()  # idempotent, every repository
            except RuntimeFailure as exc:
                if self.archive.repos(ds) == (1,):
                    raise
                # The off-site repository is unreachable: the database runs with its local
                # one; backups report the failure, and the next start tries again.
                log.warning("%s: off-site repository: %s", ds.label, exc.message)
                tool.run("stanza-create", "--repo=1")

    def drop_slot(self, primary: Datastore, replica: str) -> None:
        """The replication slot of ``replica`` on ``primary`` removed (else the primary keeps
        its WAL for a replica that is gone)."""
        with self.connect(primary) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND NOT active",
                (replication_slot(replica),),
            )

    def heartbeat(self, ds: Datastore) -> None:
        """Write Shipyard's heartbeat row (restore drills read it back)."""
        with self.connect(ds, ds.spec.database_name) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.heartbeat VALUES (1, now()) "
                    "ON CONFLICT (id) DO UPDATE SET ts = excluded.ts"
                ).format(sql.Identifier(HEARTBEAT_SCHEMA))
            )

    # -- what apps and people see ------------------------------------------------------------

    def connection(self, ds: Datastore, secrets: Mapping[str, str]) -> dict[str, str]:
        user, database, password = ds.spec.user, ds.spec.database_name, secrets["password"]
        host, port = "127.0.0.1", str(ds.port)
        return {
            "connectionString": (
                f"postgresql://{quote(user)}:{quote(password, safe='')}@{host}:{port}/"
                f"{quote(database)}"
            ),
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "database": database,
        }

    def facts(self, ds: Datastore, secrets: Mapping[str, str]) -> DatastoreFacts:
        try:
            with self.connect(ds, timeout_s=1) as conn:
                row = conn.execute(
                    "SELECT pg_database_size(%s), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type='client backend'),"
                    " current_setting('max_connections')::int, pg_is_in_recovery()",
                    (ds.spec.database_name,),
                ).fetchone()
                lag = None
                if row[3]:
                    lag = conn.execute(
                        "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
                        "THEN 0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                        " END"
                    ).fetchone()[0]
                archiver = conn.execute(
                    "SELECT archived_count, last_archived_wal, last_archived_time, "
                    "failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver"
                ).fetchone()
        except psycopg.Error:
            return DatastoreFacts()
        names = ("archived_count", "last_archived_wal", "last_archived_time", "failed_count",
                 "last_failed_wal", "last_failed_time")  # fmt: skip
        archive = {
            k: (v.timestamp() if hasattr(v, "timestamp") else v)
            for k, v in zip(names, archiver, strict=True)
        }
        return DatastoreFacts(
            size_bytes=int(row[0]),
            connections=int(row[1]),
            max_connections=int(row[2]),
            in_recovery=bool(row[3]),
            replication_lag_s=None if lag is None else float(lag),
            details={"archiver": archive},
        )

    def client_command(
        self, ds: Datastore, secrets: Mapping[str, str], args: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        bindir = self.installed().get(ds.version)
        psql = str(bindir / "psql") if bindir else "psql"
        argv = [psql, "-h", "127.0.0.1", "-p", str(ds.port), "-U", ds.spec.user,
                "-d", ds.spec.database_name, *args]  # fmt: skip
        return argv, {"PGPASSWORD": secrets["password"], "PGAPPNAME": "shipyard psql"}

    # -- backups ----------------------------------------------------------------------------

    def _archive(self, ds: Datastore) -> PgBackRestArchive:
        if self.archive is None or self.archive.archive_command(ds) is None:
            raise UsageError(f"{ds.label} has no backups (a read replica is backed up through "
                             "its primary)", fields={"datastore": ds.name})  # fmt: skip
        where = layout(ds)
        if where.pgdata.is_dir():  # its retention or off-site settings may have changed
            self.archive.write(ds, where.socket_dir, where.pgdata)
        return self.archive

    def backup(self, ds: Datastore, secrets: Mapping[str, str], kind: str) -> list[BackupEntry]:
        taken = self._archive(ds).backup(ds, secrets, kind if kind in ("full", "diff") else "full")
        return [_entry(b) for b in taken]

    def backups(self, ds: Datastore, secrets: Mapping[str, str]) -> list[BackupEntry]:
        info = self._archive(ds).info(ds, secrets)
        return [_entry(b) for b in info.backups]

    def restored_to(self, ds: Datastore, secrets: Mapping[str, str]) -> float | None:
        try:
            with self.connect(ds, ds.spec.database_name) as conn:
                row = conn.execute(
                    sql.SQL("SELECT max(ts) FROM {}.heartbeat").format(
                        sql.Identifier(HEARTBEAT_SCHEMA)
                    )
                ).fetchone()
        except psycopg.Error as exc:
            message = f"{ds.label}: cannot read its heartbeat: {_first_line(exc)}"
            raise RuntimeFailure(message) from exc
        return row[0].timestamp() if row and row[0] is not None else None

    def restorable_since(self, ds: Datastore, secrets: Mapping[str, str]) -> float | None:
        earliest = self._archive(ds).info(ds, secrets).earliest_restorable()
        return earliest.timestamp() if earliest else None

    def restore_files(
        self, source: Datastore, secrets: Mapping[str, str], point: RestorePoint,
        dest: Datastore, location: str | None = None,
    ) -> None:  # fmt: skip
        archive = self._archive(source)
        if point.kind == "time":
            when = dt.datetime.fromtimestamp(float(point.time or 0), dt.UTC)
            target = RestoreTarget.at(when)
        elif point.kind == "backup":
            target = RestoreTarget.backup(str(point.backup_id))
        else:
            target = RestoreTarget.latest()
        repo = 2 if location == "s3" else 1 if location == "local" else None
        pgdata = layout(dest).pgdata
        dest_dir = Path(dest.dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest_dir.chmod(0o711)
        ensure_reachable(dest_dir, self.account())
        try:
            archive.restore(source, secrets, pgdata, target, repo=repo)
        except (RuntimeFailure, ValueError) as exc:
            message = exc.message if isinstance(exc, RuntimeFailure) else str(exc)
            raise UsageError(f"cannot restore {source.label}: {message}",
                             fields={"datastore": source.name}) from exc  # fmt: skip
        if dest.origin != "drill":
            # pgBackRest keeps a restored cluster from archiving (into the source's stanza);
            # this one archives into its own, so Shipyard's archive_mode applies.
            auto = pgdata / "postgresql.auto.conf"
            lines = auto.read_text().splitlines(keepends=True) if auto.exists() else []
            kept = [ln for ln in lines if not ln.replace(" ", "").startswith("archive_mode=")]
            _write_owned(auto, "".join(kept), self.account())


def _entry(b: BackupInfo) -> BackupEntry:
    return BackupEntry(
        id=b.label, kind=b.kind, started_at=b.start.timestamp(), finished_at=b.stop.timestamp(),
        size_bytes=b.database_size, stored_bytes=b.repo_delta,
        locations=("s3",) if b.repo == 2 else ("local",),
    )  # fmt: skip


def replication_slot(name: str) -> str:
    """The physical replication slot of a read replica (a lowercase identifier)."""
    slug = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    return f"replica_{slug}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _ensure_role(conn: Any, role: str, password: str, options: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} WITH " + options + " PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(scram_verifier(password))
        )
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _write_owned(path: Path, text: str, acct: Account) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if os.geteuid() == 0:
        os.chown(tmp, acct.uid, acct.gid)
    os.replace(tmp, path)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
