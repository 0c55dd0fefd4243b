"""redis.conf of a Key Value instance (pure: config in, text out; golden-tested).

Contracts of the rendered file (Redis 7.0, checked against the Debian package's redis.conf):

* the server stays in the foreground (``daemonize no``, ``supervised no``) and logs to stdout
  (``logfile ""``): Shipyard starts it through its process runtime and captures its output;
* it listens on ``port`` at the ``bind`` addresses only (default 127.0.0.1), ``protected-mode
  yes``;
* every file it writes is under the data directory: ``dir`` is the data directory, the RDB
  snapshot is ``dump.rdb`` in it, the AOF is ``appendonlydir/`` in it. Persistence is AOF
  (``appendfsync everysec``, RDB preamble) plus RDB save points; CONFIG SET of ``dir`` and
  ``dbfilename`` is refused (``enable-protected-configs no``), as are DEBUG and MODULE;
* the password is never in clear: the ``default`` user's ACL line holds its SHA-256
  (``user default on #<sha256> ~* &* +@all``), which is also what CONFIG REWRITE writes back;
  the command line (:func:`server_command`) names only the file;
* ``maxmemory`` comes from the plan (:func:`plan_memory`), ``maxmemory-policy`` from the
  Blueprint (Render's default ``allkeys-lru``).

``render_config(cfg, appendonly=False)`` is the restore variant (see backup.py): a server started
with ``appendonly yes`` and no AOF directory ignores dump.rdb and starts empty.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.errors import UsageError

CONFIG_FILE = "redis.conf"
RDB_FILE = "dump.rdb"
AOF_DIR = "appendonlydir"
AOF_FILE = "appendonly.aof"

# Render's maxmemoryPolicy values (Blueprint spec, `maxmemoryPolicy`) and its default for a new
# Key Value instance.
MAXMEMORY_POLICIES = (
    "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
    "volatile-random", "volatile-ttl", "noeviction",
)  # fmt: skip
DEFAULT_MAXMEMORY_POLICY = "allkeys-lru"

_MB = 1024 * 1024
# Render's Key Value instance types (render.com/pricing, "Key Value": RAM per instance; the
# Blueprint `plan` values). Written from Render's published table as known to us, not fetched
# here: update this table if Render's changes.
PLAN_MEMORY_BYTES = {
    "free": 25 * _MB,
    "starter": 256 * _MB,
    "standard": 1024 * _MB,
    "pro": 5 * 1024 * _MB,
    "pro plus": 10 * 1024 * _MB,
}
DEFAULT_PLAN = "starter"  # Render's default plan for a Key Value instance

# Redis's defaults (redis.conf: "save 3600 1 300 100 60 10000"), one line each so that CONFIG
# REWRITE rewrites them in place.
DEFAULT_SAVE_POINTS = ((3600, 1), (300, 100), (60, 10000))


def plan_memory(plan: str | None) -> int:
    """maxmemory in bytes for a Render Key Value plan (None: the default plan, starter).
    Case, ``-`` and ``_`` do not matter (``pro-plus`` is ``pro plus``). UsageError naming
    the valid plans for any other name."""
    if plan is None:
        return PLAN_MEMORY_BYTES[DEFAULT_PLAN]
    name = " ".join(plan.lower().replace("-", " ").replace("_", " ").split())
    if name not in PLAN_MEMORY_BYTES:
        valid = ", ".join(PLAN_MEMORY_BYTES)
        raise UsageError(
            f"unknown Key Value plan '{plan}': valid plans are {valid}",
            fields={"plan": plan, "valid": list(PLAN_MEMORY_BYTES)},
        )
    return PLAN_MEMORY_BYTES[name]


def password_hash(password: str) -> str:
    """The form Redis's ACL stores a password in (``#<hex>`` rules): SHA-256, lowercase hex."""
    return hashlib.sha256(password.encode()).hexdigest()


@dataclass(frozen=True)
class KeyValueConfig:
    """What the rendered redis.conf says. The password is kept out of ``repr``."""

    port: int
    data_dir: Path
    password: str = field(repr=False)
    maxmemory_bytes: int
    maxmemory_policy: str = DEFAULT_MAXMEMORY_POLICY
    bind: tuple[str, ...] = ("127.0.0.1",)
    save_points: tuple[tuple[int, int], ...] = DEFAULT_SAVE_POINTS

    def __post_init__(self) -> None:
        if self.maxmemory_policy not in MAXMEMORY_POLICIES:
            raise UsageError(
                f"unknown maxmemoryPolicy '{self.maxmemory_policy}': valid values are "
                f"{', '.join(MAXMEMORY_POLICIES)}",
                fields={"maxmemory_policy": self.maxmemory_policy},
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is outside 1..65535")
        if not self.data_dir.is_absolute():
            raise ValueError(f"data_dir must be an absolute path, got '{self.data_dir}'")
        if not self.password:
            raise ValueError("a Key Value instance needs a non-empty password")
        if self.maxmemory_bytes <= 0:
            raise ValueError(f"maxmemory_bytes must be > 0, got {self.maxmemory_bytes}")
        if not self.bind:
            raise ValueError("bind needs at least one address")
        for address in self.bind:
            _check_address(address)
        for seconds, changes in self.save_points:
            if seconds <= 0 or changes <= 0:
                raise ValueError(f"save point ({seconds}, {changes}) must be positive")


def render_config(cfg: KeyValueConfig, *, appendonly: bool = True) -> str:
    """redis.conf text for ``cfg``. ``appendonly=False`` only for the first start of a restore
    (backup.prepare_restore): the server then loads dump.rdb, and finish_restore turns the AOF
    on and rewrites the file."""
    lines = [
        "# Written by Shipyard. Edits are lost when Shipyard writes it again. No password in",
        "# clear: the default user's ACL line holds its SHA-256.",
        f"port {cfg.port}",
        f"bind {' '.join(cfg.bind)}",
        "protected-mode yes",
        "daemonize no",
        "supervised no",
        'logfile ""',
        "loglevel notice",
        "always-show-logo no",
        f"dir {_quote(str(cfg.data_dir))}",
        f"dbfilename {RDB_FILE}",
        *(f"save {seconds} {changes}" for seconds, changes in cfg.save_points),
        "stop-writes-on-bgsave-error yes",
        "rdbcompression yes",
        "rdbchecksum yes",
        f"appendonly {'yes' if appendonly else 'no'}",
        f'appendfilename "{AOF_FILE}"',
        f'appenddirname "{AOF_DIR}"',
        "appendfsync everysec",
        "aof-use-rdb-preamble yes",
        f"maxmemory {cfg.maxmemory_bytes}",
        f"maxmemory-policy {cfg.maxmemory_policy}",
        "enable-protected-configs no",
        "enable-debug-command no",
        "enable-module-command no",
        f"user default on #{password_hash(cfg.password)} ~* &* +@all",
    ]
    return "\n".join(lines) + "\n"


def server_command(config_path: Path, binary: str = "redis-server") -> str:
    """The shell command that runs the server in the foreground with ``config_path`` (no
    secret on the command line: /proc/PID/cmdline is world-readable)."""
    return f"exec {shlex.quote(binary)} {shlex.quote(str(config_path))}"


def _check_address(address: str) -> None:
    """A ``bind`` entry: an IP address, ``*``, either optionally prefixed ``-`` (Redis: skip it
    when the address is unavailable)."""
    bare = address.removeprefix("-")
    if bare in ("*", "::*"):
        return
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        raise ValueError(f"bind address '{address}' is not an IP address") from None


def _quote(value: str) -> str:
    """A double-quoted redis.conf argument (the server's sdssplitargs: backslash escapes,
    ``\\xHH`` for control characters)."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
