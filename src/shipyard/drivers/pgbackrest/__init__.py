"""The pgBackRest driver: backups and point-in-time recovery of one PostgreSQL cluster.

config.py renders ``pgbackrest.conf`` (pure, no secrets in it) and the ``archive_command`` /
``restore_command`` lines for postgresql.conf; engine.py runs pgBackRest (:class:`PgBackRest`)
and parses what it reports. The caller provisions the cluster; the usual sequence:

1. ``render_config(cfg)`` into a file the service account can read; directories of ``cfg``
   (repo, log, lock, spool) owned by that account.
2. postgresql.conf: ``wal_level=replica``, ``archive_mode=on``,
   ``archive_command=archive_command(path, cfg.stanza)``; start PostgreSQL with
   ``secret_env(...)`` in its environment.
3. ``PgBackRest(path, cfg.stanza, run_as, secret_env(...))``: ``stanza_create()``,
   ``check()``, then ``backup("full")`` / ``backup("diff")`` / ``backup("incr")`` on a
   schedule, ``info()``, ``verify()``, ``restore(new_dir, RestoreTarget.at(t))``.

This package imports nothing of the control plane.
"""

from shipyard.drivers.pgbackrest.config import (
    S3Repo,
    StanzaConfig,
    archive_command,
    render_config,
    restore_command,
    secret_env,
)
from shipyard.drivers.pgbackrest.engine import (
    ArchiveRange,
    BackupInfo,
    BackupKind,
    PgBackRest,
    RepoStatus,
    RestoreResult,
    RestoreTarget,
    StanzaInfo,
    VerifyResult,
    dropped_wal,
)

__all__ = [
    "ArchiveRange",
    "BackupInfo",
    "BackupKind",
    "PgBackRest",
    "RepoStatus",
    "RestoreResult",
    "RestoreTarget",
    "S3Repo",
    "StanzaConfig",
    "StanzaInfo",
    "VerifyResult",
    "archive_command",
    "dropped_wal",
    "render_config",
    "restore_command",
    "secret_env",
]
