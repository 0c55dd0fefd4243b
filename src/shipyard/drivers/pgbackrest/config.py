"""pgBackRest 2.45 configuration for one PostgreSQL cluster (one stanza). Pure: no I/O.

:func:`render_config` turns a :class:`StanzaConfig` into the text of ``pgbackrest.conf``:

- ``[global]``: lock, log and spool paths; archive-push behaviour (``archive-async``,
  ``archive-push-queue-max``: when that much WAL waits for a repository that does not take it,
  pgBackRest tells PostgreSQL the WAL was archived and DROPS it, with a warning in the
  PostgreSQL log; the disk never fills, PITR past that point is lost until the next backup);
  ``start-fast`` (a backup starts with an immediate checkpoint); ``process-max``;
  ``compress-type``; and the repositories.
- repo1 is a local directory (posix); repo2, when :attr:`StanzaConfig.s3` is set, an S3 bucket
  (path-style URIs, TLS verified against ``ca_file`` or the system CAs). Both are encrypted
  (``aes-256-cbc``) and keep full backups by count or by age in days
  (``repoN-retention-full-type=time``); differential/incremental backups and WAL expire with
  the full backup they depend on.
- ``[<stanza>]``: the cluster: data directory, port, unix socket directory, superuser role.

The file holds NO secret. The cipher passphrases and the S3 access key and secret reach
pgBackRest through its environment (:func:`secret_env`): the caller passes that mapping to
:class:`~shipyard.drivers.pgbackrest.engine.PgBackRest` and to the PostgreSQL server process,
whose ``archive_command`` (:func:`archive_command`) inherits it.

Every value is validated when the dataclasses are built (ValueError naming the field): no
value can add a line or an option to the file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CIPHER_TYPE = "aes-256-cbc"
RetentionType = Literal["count", "time"]
CompressType = Literal["none", "gz", "lz4", "zst", "bz2"]

ENV_REPO1_CIPHER_PASS = "PGBACKREST_REPO1_CIPHER_PASS"
ENV_REPO2_CIPHER_PASS = "PGBACKREST_REPO2_CIPHER_PASS"
ENV_REPO2_S3_KEY = "PGBACKREST_REPO2_S3_KEY"
ENV_REPO2_S3_KEY_SECRET = "PGBACKREST_REPO2_S3_KEY_SECRET"
SECRET_ENV_NAMES = frozenset(
    {ENV_REPO1_CIPHER_PASS, ENV_REPO2_CIPHER_PASS, ENV_REPO2_S3_KEY, ENV_REPO2_S3_KEY_SECRET}
)

_STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SIZE = re.compile(r"^[0-9]+(?:[KMGTP]i?B|B)?$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[A-Za-z0-9-]+$")
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class S3Repo:
    """repo2: an S3-compatible bucket. ``endpoint`` is ``host`` or ``host:port`` (port 443 by
    default; pgBackRest speaks HTTPS only); ``path`` is the repository's prefix in the bucket."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"
    path: str = "/pgbackrest"
    ca_file: Path | None = None
    verify_tls: bool = True
    uri_style: Literal["path", "host"] = "path"

    def __post_init__(self) -> None:
        host, _, port = self.endpoint.partition(":")
        if not _HOST.match(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError(f"S3Repo.endpoint must be host or host:port, got {self.endpoint!r}")
        if not _BUCKET.match(self.bucket):
            raise ValueError(f"S3Repo.bucket is not a valid bucket name: {self.bucket!r}")
        if not _REGION.match(self.region):
            raise ValueError(f"S3Repo.region is not a region name: {self.region!r}")
        _check_abs("S3Repo.path", Path(self.path))
        if self.ca_file is not None:
            _check_abs("S3Repo.ca_file", self.ca_file)

    @property
    def host(self) -> str:
        return self.endpoint.partition(":")[0]

    @property
    def port(self) -> int:
        port = self.endpoint.partition(":")[2]
        return int(port) if port else 443


@dataclass(frozen=True)
class StanzaConfig:
    """One cluster's backup configuration. Paths are absolute; the account pgBackRest runs as
    must own (or be able to write) ``repo_path``, ``log_path``, ``lock_path`` and
    ``spool_path``; ``retention_full`` counts full backups, or days with
    ``retention_full_type="time"``."""

    stanza: str
    pg_path: Path
    pg_port: int
    pg_socket_dir: Path
    repo_path: Path
    log_path: Path
    lock_path: Path
    spool_path: Path
    pg_user: str = "postgres"
    retention_full: int = 2
    retention_full_type: RetentionType = "count"
    archive_push_queue_max: str | None = "1GiB"
    s3: S3Repo | None = None
    process_max: int = 1
    archive_async: bool = False
    compress_type: CompressType = "zst"
    start_fast: bool = True

    def __post_init__(self) -> None:
        if not _STANZA.match(self.stanza):
            raise ValueError(
                f"StanzaConfig.stanza must be letters, digits, '_', '.', '-' (at most 63), "
                f"got {self.stanza!r}"
            )
        for name in ("pg_path", "pg_socket_dir", "repo_path", "log_path", "lock_path"):
            _check_abs(f"StanzaConfig.{name}", getattr(self, name))
        _check_abs("StanzaConfig.spool_path", self.spool_path)
        if not 0 < self.pg_port < 65536:
            raise ValueError(f"StanzaConfig.pg_port out of range: {self.pg_port}")
        if not _ROLE.match(self.pg_user):
            raise ValueError(f"StanzaConfig.pg_user is not a plain role name: {self.pg_user!r}")
        if not 1 <= self.retention_full <= 9999999:
            raise ValueError(f"StanzaConfig.retention_full out of range: {self.retention_full}")
        if self.archive_push_queue_max is not None and not _SIZE.match(self.archive_push_queue_max):
            raise ValueError(
                "StanzaConfig.archive_push_queue_max must be a size like '1GiB' or '512MB', "
                f"got {self.archive_push_queue_max!r}"
            )
        if not 1 <= self.process_max <= 999:
            raise ValueError(f"StanzaConfig.process_max out of range: {self.process_max}")

    @property
    def repos(self) -> tuple[int, ...]:
        """The repository numbers configured: (1,) or (1, 2)."""
        return (1, 2) if self.s3 is not None else (1,)


def render_config(cfg: StanzaConfig) -> str:
    """The text of pgbackrest.conf for ``cfg`` (ends with a newline; no secrets)."""
    lines = [
        f"# pgBackRest configuration of stanza '{cfg.stanza}', written by Shipyard.",
        "# No secrets here: cipher passphrases and S3 keys come from the environment",
        "# (" + ", ".join(sorted(SECRET_ENV_NAMES)) + ").",
        "[global]",
        f"lock-path={cfg.lock_path}",
        f"log-path={cfg.log_path}",
        "log-level-console=warn",
        "log-level-stderr=warn",
        "log-level-file=info",
        f"spool-path={cfg.spool_path}",
        f"archive-async={_yn(cfg.archive_async)}",
    ]
    if cfg.archive_push_queue_max is not None:
        lines.append(f"archive-push-queue-max={cfg.archive_push_queue_max}")
    lines += [
        f"start-fast={_yn(cfg.start_fast)}",
        f"process-max={cfg.process_max}",
        f"compress-type={cfg.compress_type}",
        "",
        "repo1-type=posix",
        f"repo1-path={cfg.repo_path}",
        *_repo_common(1, cfg),
    ]
    if cfg.s3 is not None:
        lines += ["", *_s3_lines(cfg.s3), *_repo_common(2, cfg)]
    lines += [
        "",
        f"[{cfg.stanza}]",
        f"pg1-path={cfg.pg_path}",
        f"pg1-port={cfg.pg_port}",
        f"pg1-socket-path={cfg.pg_socket_dir}",
        f"pg1-user={cfg.pg_user}",
    ]
    return "\n".join(lines) + "\n"


def secret_env(
    cipher_pass: str,
    s3_key: str | None = None,
    s3_secret: str | None = None,
    *,
    repo2_cipher_pass: str | None = None,
) -> dict[str, str]:
    """The environment pgBackRest (and the PostgreSQL server, for archive-push) needs: the
    repositories' cipher passphrase (repo2 gets ``repo2_cipher_pass`` or the same one) and,
    when given, the S3 access key and secret of repo2."""
    if not cipher_pass:
        raise ValueError("secret_env: the cipher passphrase must not be empty")
    if (s3_key is None) != (s3_secret is None):
        raise ValueError("secret_env: give both the S3 access key and its secret, or neither")
    env = {ENV_REPO1_CIPHER_PASS: cipher_pass}
    if s3_key is not None and s3_secret is not None:
        env[ENV_REPO2_CIPHER_PASS] = repo2_cipher_pass or cipher_pass
        env[ENV_REPO2_S3_KEY] = s3_key
        env[ENV_REPO2_S3_KEY_SECRET] = s3_secret
    return env


def archive_command(config_path: Path, stanza: str, pgbackrest_bin: str = "pgbackrest") -> str:
    """postgresql.conf ``archive_command`` pushing WAL through pgBackRest (to every repo)."""
    return f"{_base(config_path, stanza, pgbackrest_bin)} archive-push %p"


def restore_command(config_path: Path, stanza: str, pgbackrest_bin: str = "pgbackrest") -> str:
    """postgresql.conf ``restore_command`` fetching WAL through pgBackRest (a standby's;
    ``restore`` writes its own into the restored cluster's postgresql.auto.conf)."""
    return f'{_base(config_path, stanza, pgbackrest_bin)} archive-get %f "%p"'


def _base(config_path: Path, stanza: str, pgbackrest_bin: str) -> str:
    _check_abs("config_path", config_path)
    if not _STANZA.match(stanza):
        raise ValueError(f"not a stanza name: {stanza!r}")
    # PostgreSQL runs the command through /bin/sh; quote what could need it. '%' in a path would
    # be taken for a placeholder, and a quote would end the postgresql.conf string.
    for text in (str(config_path), pgbackrest_bin):
        if any(c in text for c in "%'\n"):
            raise ValueError(f"path unusable in archive_command: {text!r}")
    return (
        f"{shlex.quote(pgbackrest_bin)} --config={shlex.quote(str(config_path))} --stanza={stanza}"
    )


def _repo_common(n: int, cfg: StanzaConfig) -> list[str]:
    return [
        f"repo{n}-cipher-type={CIPHER_TYPE}",
        f"repo{n}-retention-full-type={cfg.retention_full_type}",
        f"repo{n}-retention-full={cfg.retention_full}",
    ]


def _s3_lines(s3: S3Repo) -> list[str]:
    lines = [
        "repo2-type=s3",
        f"repo2-path={s3.path}",
        f"repo2-s3-bucket={s3.bucket}",
        f"repo2-s3-endpoint={s3.host}",
        f"repo2-storage-port={s3.port}",
        f"repo2-s3-region={s3.region}",
        f"repo2-s3-uri-style={s3.uri_style}",
        f"repo2-storage-verify-tls={_yn(s3.verify_tls)}",
    ]
    if s3.ca_file is not None:
        lines.append(f"repo2-storage-ca-file={s3.ca_file}")
    return lines


def _check_abs(name: str, path: Path) -> None:
    text = str(path)
    if not path.is_absolute() or any(c in text for c in "\n\r\0") or text != text.strip():
        raise ValueError(f"{name} must be an absolute path without line breaks: {text!r}")


def _yn(flag: bool) -> str:
    return "y" if flag else "n"
