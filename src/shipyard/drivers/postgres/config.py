"""PostgreSQL configuration files of a managed database (pure: spec in, text out).

Shipyard owns ``shipyard.conf`` (included from postgresql.conf), ``pg_hba.conf`` and
``pg_ident.conf``. Authentication:

* the superuser ``postgres`` has no password: only the server's own account, and Shipyard's,
  reach it, over the unix socket with peer authentication mapped in pg_ident.conf;
* every other role authenticates with scram-sha-256, over TCP from loopback, and from the
  ipAllowList sources when the database lists any (then the server listens on every address);
* ``replicator`` (streaming replication of read replicas) likewise, from loopback only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shipyard.blueprint.spec import AllowedSource

SUPERUSER = "postgres"
REPLICATION_ROLE = "replicator"
HEARTBEAT_SCHEMA = "_shipyard"
IDENT_MAP = "shipyard"

# Render's PostgreSQL plans (render.com/pricing: memory per instance) -> MB of memory. Legacy
# names (starter, standard, pro...) are still common in Blueprints.
PLAN_MEMORY_MB = {
    "free": 256, "starter": 256, "basic-256mb": 256, "basic-1gb": 1024, "basic-4gb": 4096,
    "standard": 1024, "pro": 4096, "pro-plus": 8192, "pro-4gb": 4096, "pro-8gb": 8192,
    "pro-16gb": 16384, "pro-32gb": 32768, "pro-64gb": 65536, "pro-128gb": 131072,
    "pro-192gb": 196608, "pro-256gb": 262144, "pro-384gb": 393216, "pro-512gb": 524288,
    "accelerated-16gb": 16384, "accelerated-32gb": 32768, "accelerated-64gb": 65536,
    "accelerated-128gb": 131072, "accelerated-256gb": 262144, "accelerated-384gb": 393216,
    "accelerated-512gb": 524288, "accelerated-768gb": 786432, "accelerated-1024gb": 1048576,
}  # fmt: skip
DEFAULT_MEMORY_MB = 1024


def plan_memory_mb(plan: str | None) -> int:
    """Memory a plan stands for; an unknown plan name gets the default (a notice says so)."""
    return PLAN_MEMORY_MB.get((plan or "").lower(), DEFAULT_MEMORY_MB)


@dataclass(frozen=True)
class ServerConfig:
    port: int
    socket_dir: str
    memory_mb: int
    allow: Sequence[AllowedSource] = ()  # () = loopback only
    archive_command: str | None = None  # None: WAL archiving off
    replica: bool = False


def server_conf(cfg: ServerConfig) -> str:
    """shipyard.conf: the settings Shipyard owns (postgresql.conf includes it last)."""
    shared_buffers = max(32, cfg.memory_mb // 4)
    max_connections = 100 if cfg.memory_mb <= 4096 else 200 if cfg.memory_mb <= 16384 else 400
    listen = "*" if cfg.allow else "127.0.0.1"
    lines = [
        "# Written by Shipyard at every start: edits here are lost (use ALTER SYSTEM).",
        f"listen_addresses = '{listen}'",
        f"port = {cfg.port}",
        f"unix_socket_directories = '{_quote(cfg.socket_dir)}'",
        "unix_socket_permissions = 0700",
        f"max_connections = {max_connections}",
        f"shared_buffers = {shared_buffers}MB",
        f"effective_cache_size = {max(64, cfg.memory_mb * 3 // 4)}MB",
        "password_encryption = 'scram-sha-256'",
        "wal_level = replica",
        "max_wal_senders = 10",
        "max_replication_slots = 10",
        "max_slot_wal_keep_size = '4GB'",  # a replica down for long cannot fill the disk
        "hot_standby = on",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "logging_collector = off",  # stderr goes to the server's log writer
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "log_checkpoints = on",
        "log_connections = off",
    ]
    if cfg.archive_command is not None:
        lines += [
            "archive_mode = on",
            "archive_timeout = 60",  # recovery point on a quiet database: at most 60 s
            f"archive_command = '{_quote(cfg.archive_command)}'",
        ]
    else:
        lines.append("archive_mode = off")
    return "\n".join(lines) + "\n"


def hba_conf(allow: Sequence[AllowedSource]) -> str:
    lines = [
        "# Written by Shipyard at every start. TYPE DATABASE USER ADDRESS METHOD",
        f"local all {SUPERUSER} peer map={IDENT_MAP}",
        f"local replication {SUPERUSER} peer map={IDENT_MAP}",
        "local all all scram-sha-256",
        f"host replication {REPLICATION_ROLE} 127.0.0.1/32 scram-sha-256",
        f"host replication {REPLICATION_ROLE} ::1/128 scram-sha-256",
        f"host all {SUPERUSER} 0.0.0.0/0 reject",
        f"host all {SUPERUSER} ::/0 reject",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host all all ::1/128 scram-sha-256",
    ]
    for source in allow:
        note = f"  # {source.description}" if source.description else ""
        lines.append(f"host all all {source.cidr} scram-sha-256{note.replace(chr(10), ' ')}")
    return "\n".join(lines) + "\n"


def ident_conf(os_users: Sequence[str]) -> str:
    """The OS accounts that may connect as the superuser: the server's own, and Shipyard's."""
    lines = ["# Written by Shipyard. MAPNAME SYSTEM-USERNAME PG-USERNAME"]
    lines += [f"{IDENT_MAP} {user} {SUPERUSER}" for user in dict.fromkeys(os_users)]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    """A value inside single quotes in postgresql.conf."""
    return value.replace("\\", "\\\\").replace("'", "''")
