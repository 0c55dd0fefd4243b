"""Backups of managed PostgreSQL databases with pgBackRest (drivers/pgbackrest): WAL archived
from the first start, full/differential backups, point-in-time restores into new data
directories, both repositories encrypted.

Per database ``ds`` (its stanza is the name of its directory, SHIPYARD_HOME/data/<stanza>):

* ``<ds.dir>/pgbackrest/``: pgbackrest.conf (no secret in it), its log, lock and spool
  directories, owned by the server's account;
* repo1: SHIPYARD_HOME/backups/postgres/<stanza>/, outside the database's directory, so the
  backups outlive `shipyard db delete` for their retention period;
* repo2 (optional): the off-site S3 repository of Settings.offsite, under ``/<stanza>``.

The repositories' passphrase (the database's ``backup_cipher`` secret) and the S3 credentials
reach pgBackRest, and the server's archive_command, through their environment only.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

from shipyard.drivers.local.users import Account, ensure_reachable, give, service_account
from shipyard.drivers.pgbackrest.config import (
    S3Repo,
    StanzaConfig,
    archive_command,
    render_config,
    secret_env,
)
from shipyard.drivers.pgbackrest.engine import BackupInfo, PgBackRest, RestoreTarget, StanzaInfo
from shipyard.drivers.postgres.config import SUPERUSER
from shipyard.records import Datastore
from shipyard.settings import Offsite

ARCHIVE_QUEUE_MAX = "1GiB"  # WAL a dead repository may hold back before it is dropped


def stanza(ds: Datastore) -> str:
    return Path(ds.dir).name


class PgBackRestArchive:
    """The WalArchive of PostgresEngine and the backup/restore operations of databases."""

    def __init__(self, home: Path, offsite: Offsite | None = None) -> None:
        self.home = home
        self.offsite = offsite

    # -- files -------------------------------------------------------------------------------

    def config_path(self, ds: Datastore) -> Path:
        return Path(ds.dir) / "pgbackrest" / "pgbackrest.conf"

    def repo_path(self, ds: Datastore) -> Path:
        return self.home / "backups" / "postgres" / stanza(ds)

    def stanza_config(self, ds: Datastore, socket_dir: Path, pgdata: Path) -> StanzaConfig:
        base = Path(ds.dir) / "pgbackrest"
        s3 = None
        if self.offsite is not None and ds.spec.backups.offsite:
            s3 = S3Repo(
                endpoint=self.offsite.endpoint, bucket=self.offsite.bucket,
                region=self.offsite.region, path=f"{self.offsite.prefix}/{stanza(ds)}",
                ca_file=self.offsite.ca_file,
            )  # fmt: skip
        return StanzaConfig(
            stanza=stanza(ds), pg_path=pgdata, pg_port=ds.port, pg_socket_dir=socket_dir,
            repo_path=self.repo_path(ds), log_path=base / "log", lock_path=base / "lock",
            spool_path=base / "spool", pg_user=SUPERUSER,
            retention_full=ds.spec.backups.retention_days, retention_full_type="time",
            archive_push_queue_max=ARCHIVE_QUEUE_MAX, s3=s3,
        )  # fmt: skip

    def write(self, ds: Datastore, socket_dir: Path, pgdata: Path) -> None:
        """pgbackrest.conf and its directories (every start: settings may have changed); none
        for a drill's throwaway server or a replica, which keep nothing."""
        if self.archive_command(ds) is None:
            return
        acct = service_account("postgres")
        cfg = self.stanza_config(ds, socket_dir, pgdata)
        repos = self.repo_path(ds).parent  # backups/postgres: the account's, like its repos
        for directory in (repos, cfg.log_path, cfg.lock_path, cfg.spool_path, cfg.repo_path):
            _own_dir(directory, acct)  # not its contents: a repository may hold many files
        ensure_reachable(cfg.repo_path, acct)
        path = self.config_path(ds)
        tmp = path.with_name(".pgbackrest.conf.tmp")
        tmp.write_text(render_config(cfg))
        give(path.parent, acct, 0o700)
        tmp.replace(path)

    # -- WalArchive --------------------------------------------------------------------------

    def archive_command(self, ds: Datastore) -> str | None:
        if ds.origin == "drill" or ds.spec.primary is not None:
            return None  # a throwaway drill instance, a replica: nothing of theirs to keep
        return archive_command(self.config_path(ds), stanza(ds))

    def server_env(self, ds: Datastore, secrets: Mapping[str, str]) -> dict[str, str]:
        return self.env(secrets)

    def env(self, secrets: Mapping[str, str]) -> dict[str, str]:
        cipher = secrets["backup_cipher"]
        if self.offsite is None:
            return secret_env(cipher)
        return secret_env(cipher, self.offsite.access_key, self.offsite.secret_key,
                          repo2_cipher_pass=cipher)  # fmt: skip

    # -- operations --------------------------------------------------------------------------

    def tool(self, ds: Datastore, secrets: Mapping[str, str]) -> PgBackRest:
        # Its account must still reach the repository and the configuration (a chmod of a
        # directory above them resets the ACL that lets it through).
        acct = service_account("postgres")
        for path in (self.config_path(ds).parent, self.repo_path(ds)):
            if path.exists():  # a lost local repository: restores read the S3 one
                ensure_reachable(path, acct)
        return PgBackRest(self.config_path(ds), stanza(ds), service_account("postgres").name,
                          self.env(secrets))  # fmt: skip

    def repos(self, ds: Datastore) -> tuple[int, ...]:
        return (1, 2) if self.offsite is not None and ds.spec.backups.offsite else (1,)

    def backup(self, ds: Datastore, secrets: Mapping[str, str], kind: str) -> list[BackupInfo]:
        """A backup into each repository; the backups as pgBackRest lists them."""
        tool = self.tool(ds, secrets)
        return [tool.backup(kind, repo=repo) for repo in self.repos(ds)]  # type: ignore[arg-type]

    def info(self, ds: Datastore, secrets: Mapping[str, str]) -> StanzaInfo:
        return self.tool(ds, secrets).info()

    def restore(
        self, ds: Datastore, secrets: Mapping[str, str], target_dir: Path,
        target: RestoreTarget, repo: int | None = None,
    ) -> None:  # fmt: skip
        self.tool(ds, secrets).restore(target_dir, target, repo=repo)


def _own_dir(path: Path, acct: Account) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, acct.uid, acct.gid)
    path.chmod(0o700)


def restore_target(kind: str, value: str | None) -> RestoreTarget:
    if kind == "latest":
        return RestoreTarget.latest()
    if kind == "backup":
        return RestoreTarget.backup(str(value))
    when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return RestoreTarget.at(when)
