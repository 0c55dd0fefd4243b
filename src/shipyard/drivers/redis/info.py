"""What a Redis server says about itself: INFO text -> :class:`KeyValueInfo` (pure).

The parser never raises: a field the server does not report (an older Redis, Valkey) gets its
zero value, or None where "unknown" must stay distinguishable (``rdb_saves``, the replication
fields of a primary). ``raw`` keeps every ``name:value`` line for anything not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import overload


@dataclass(frozen=True)
class KeyValueInfo:
    version: str = ""
    uptime_s: int = 0
    connected_clients: int = 0
    used_memory: int = 0
    maxmemory: int = 0
    maxmemory_policy: str = ""
    keys_per_db: Mapping[int, int] = field(default_factory=dict)
    expires_per_db: Mapping[int, int] = field(default_factory=dict)
    # persistence
    loading: bool = False
    rdb_bgsave_in_progress: bool = False
    rdb_last_bgsave_status: str = ""
    rdb_last_save_time: int = 0
    rdb_changes_since_last_save: int = 0
    rdb_saves: int | None = None  # saves started since startup (Redis >= 7.0)
    rdb_last_load_keys_loaded: int | None = None  # Redis >= 7.0
    rdb_last_load_keys_expired: int | None = None
    aof_enabled: bool = False
    aof_rewrite_in_progress: bool = False
    aof_rewrite_scheduled: bool = False
    aof_last_bgrewrite_status: str = ""
    aof_last_write_status: str = ""
    aof_rewrites: int | None = None  # rewrites started since startup (Redis >= 7.0)
    # replication
    role: str = ""
    connected_replicas: int = 0
    master_host: str | None = None
    master_port: int | None = None
    master_link_status: str | None = None
    master_repl_offset: int = 0
    raw: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def keys(self) -> int:
        """Keys in every database."""
        return sum(self.keys_per_db.values())


def parse_info(text: str) -> KeyValueInfo:
    """The answer to INFO (any sections; absent ones leave their fields at their defaults)."""
    raw: dict[str, str] = {}
    keys: dict[int, int] = {}
    expires: dict[int, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, value = line.split(":", 1)
        raw[name] = value
        if name.startswith("db") and name[2:].isdigit():
            stats = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
            keys[int(name[2:])] = _to_int(stats.get("keys"), 0)
            expires[int(name[2:])] = _to_int(stats.get("expires"), 0)

    def num(name: str) -> int:
        return _to_int(raw.get(name), 0)

    def maybe(name: str) -> int | None:
        return _to_int(raw.get(name), None)

    def flag(name: str) -> bool:
        return raw.get(name) == "1"

    return KeyValueInfo(
        version=raw.get("redis_version", ""),
        uptime_s=num("uptime_in_seconds"),
        connected_clients=num("connected_clients"),
        used_memory=num("used_memory"),
        maxmemory=num("maxmemory"),
        maxmemory_policy=raw.get("maxmemory_policy", ""),
        keys_per_db=keys,
        expires_per_db=expires,
        loading=flag("loading") or flag("async_loading"),
        rdb_bgsave_in_progress=flag("rdb_bgsave_in_progress"),
        rdb_last_bgsave_status=raw.get("rdb_last_bgsave_status", ""),
        rdb_last_save_time=num("rdb_last_save_time"),
        rdb_changes_since_last_save=num("rdb_changes_since_last_save"),
        rdb_saves=maybe("rdb_saves"),
        rdb_last_load_keys_loaded=maybe("rdb_last_load_keys_loaded"),
        rdb_last_load_keys_expired=maybe("rdb_last_load_keys_expired"),
        aof_enabled=flag("aof_enabled"),
        aof_rewrite_in_progress=flag("aof_rewrite_in_progress"),
        aof_rewrite_scheduled=flag("aof_rewrite_scheduled"),
        aof_last_bgrewrite_status=raw.get("aof_last_bgrewrite_status", ""),
        aof_last_write_status=raw.get("aof_last_write_status", ""),
        aof_rewrites=maybe("aof_rewrites"),
        role=raw.get("role", ""),
        connected_replicas=num("connected_slaves"),
        master_host=raw.get("master_host"),
        master_port=maybe("master_port"),
        master_link_status=raw.get("master_link_status"),
        master_repl_offset=num("master_repl_offset"),
        raw=raw,
    )


@overload
def _to_int(value: str | None, default: int) -> int: ...
@overload
def _to_int(value: str | None, default: None) -> int | None: ...
def _to_int(value: str | None, default: int | None) -> int | None:
    """``value`` as an int; ``default`` when absent or not a number."""
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default
