"""The pure parts of the Key Value driver: redis.conf rendering (golden), plans, the server
command, INFO parsing, redis-check-rdb verdicts, the BGSAVE and AOF-rewrite state machines,
error messages of the client (no server: redis-py connects lazily) and the config-file guard.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from shipyard.drivers.local.users import current
from shipyard.drivers.redis.backup import parse_rdb_check, rewrite_state, save_state
from shipyard.drivers.redis.client import KeyValueClient
from shipyard.drivers.redis.config import (
    DEFAULT_MAXMEMORY_POLICY,
    MAXMEMORY_POLICIES,
    KeyValueConfig,
    plan_memory,
    render_config,
    server_command,
)
from shipyard.drivers.redis.files import aof_missing, write_config
from shipyard.drivers.redis.info import KeyValueInfo, parse_info
from shipyard.errors import RuntimeFailure, UsageError

PASSWORD = "correct horse battery staple"
CFG = KeyValueConfig(
    port=16379,
    data_dir=Path("/var/lib/shipyard/data/cache/redis"),
    password=PASSWORD,
    maxmemory_bytes=256 * 1024 * 1024,
)
PASSWORD_SHA256 = "c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a"

GOLDEN = """\
# Written by Shipyard. Edits are lost when Shipyard writes it again. No password in
# clear: the default user's ACL line holds its SHA-256.
port 16379
bind 127.0.0.1
protected-mode yes
daemonize no
supervised no
logfile ""
loglevel notice
always-show-logo no
dir "/var/lib/shipyard/data/cache/redis"
dbfilename dump.rdb
save 3600 1
save 300 100
save 60 10000
stop-writes-on-bgsave-error yes
rdbcompression yes
rdbchecksum yes
appendonly yes
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
appendfsync everysec
aof-use-rdb-preamble yes
maxmemory 268435456
maxmemory-policy allkeys-lru
enable-protected-configs no
enable-debug-command no
enable-module-command no
user default on #c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a ~* &* +@all
"""


# -- redis.conf ------------------------------------------------------------------------------


def test_render_config_golden() -> None:
    assert hashlib.sha256(PASSWORD.encode()).hexdigest() == PASSWORD_SHA256
    assert render_config(CFG) == GOLDEN


def test_password_only_as_its_hash() -> None:
    text = render_config(CFG)
    assert PASSWORD not in text and "requirepass" not in text and ">" not in text
    assert f"user default on #{PASSWORD_SHA256} " in text
    assert PASSWORD not in repr(CFG)


def test_restore_variant_differs_only_in_appendonly() -> None:
    normal = render_config(CFG).splitlines()
    restore = render_config(CFG, appendonly=False).splitlines()
    diff = [(a, b) for a, b in zip(normal, restore, strict=True) if a != b]
    assert diff == [("appendonly yes", "appendonly no")]


def test_policy_bind_and_save_points() -> None:
    cfg = replace(
        CFG, maxmemory_policy="noeviction", bind=("127.0.0.1", "-::1"), save_points=((900, 1),)
    )
    lines = render_config(cfg).splitlines()
    assert "maxmemory-policy noeviction" in lines
    assert "bind 127.0.0.1 -::1" in lines
    assert [line for line in lines if line.startswith("save ")] == ["save 900 1"]


def test_every_render_policy_is_accepted_and_the_default_is_allkeys_lru() -> None:
    assert DEFAULT_MAXMEMORY_POLICY == "allkeys-lru" == CFG.maxmemory_policy
    assert len(MAXMEMORY_POLICIES) == 8
    for policy in MAXMEMORY_POLICIES:
        assert f"maxmemory-policy {policy}\n" in render_config(
            replace(CFG, maxmemory_policy=policy)
        )
    with pytest.raises(UsageError, match=r"valid values are allkeys-lru, .*noeviction"):
        replace(CFG, maxmemory_policy="lru")


def test_data_dir_is_quoted() -> None:
    cfg = replace(CFG, data_dir=Path('/srv/my "kv"\\x\ny'))
    assert 'dir "/srv/my \\"kv\\"\\\\x\\x0ay"\n' in render_config(cfg)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, "port 0"),
        ({"port": 70000}, "port 70000"),
        ({"data_dir": Path("relative")}, "absolute"),
        ({"password": ""}, "non-empty password"),
        ({"maxmemory_bytes": 0}, "maxmemory_bytes"),
        ({"bind": ()}, "at least one"),
        ({"bind": ("localhost",)}, "not an IP address"),
        ({"save_points": ((0, 1),)}, "save point"),
    ],
)
def test_invalid_config_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(CFG, **change)  # type: ignore[arg-type]


def test_server_command_names_only_the_file() -> None:
    command = server_command(Path("/data/my kv/redis.conf"))
    assert command == "exec redis-server '/data/my kv/redis.conf'"
    assert PASSWORD not in command
    assert server_command(Path("/d/redis.conf"), "/usr/bin/redis-server") == (
        "exec /usr/bin/redis-server /d/redis.conf"
    )


# -- plans -----------------------------------------------------------------------------------

MB = 1024 * 1024


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (None, 256 * MB),
        ("free", 25 * MB),
        ("starter", 256 * MB),
        ("standard", 1024 * MB),
        ("pro", 5 * 1024 * MB),
        ("pro plus", 10 * 1024 * MB),
        ("Pro-Plus", 10 * 1024 * MB),
        ("pro_plus", 10 * 1024 * MB),
        (" STARTER ", 256 * MB),
    ],
)
def test_plan_memory(plan: str | None, expected: int) -> None:
    assert plan_memory(plan) == expected


def test_unknown_plan_lists_the_valid_ones() -> None:
    with pytest.raises(UsageError) as caught:
        plan_memory("enterprise")
    assert caught.value.message == (
        "unknown Key Value plan 'enterprise': valid plans are free, starter, standard, pro, "
        "pro plus"
    )
    assert caught.value.fields["valid"] == ["free", "starter", "standard", "pro", "pro plus"]


# -- INFO ------------------------------------------------------------------------------------

INFO_PRIMARY = """\
# Server\r
redis_version:7.0.15\r
uptime_in_seconds:42\r
# Clients\r
connected_clients:3\r
# Memory\r
used_memory:993312\r
maxmemory:268435456\r
maxmemory_policy:allkeys-lru\r
# Persistence\r
loading:0\r
async_loading:0\r
rdb_changes_since_last_save:5\r
rdb_bgsave_in_progress:0\r
rdb_last_save_time:1796216559\r
rdb_last_bgsave_status:ok\r
rdb_saves:2\r
rdb_last_load_keys_expired:1\r
rdb_last_load_keys_loaded:9\r
aof_enabled:1\r
aof_rewrite_in_progress:0\r
aof_rewrite_scheduled:0\r
aof_last_bgrewrite_status:ok\r
aof_rewrites:1\r
aof_last_write_status:ok\r
# Replication\r
role:master\r
connected_slaves:1\r
slave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0\r
master_repl_offset:1234\r
# Errorstats\r
errorstat_NOAUTH:count=2\r
# Keyspace\r
db0:keys=5,expires=1,avg_ttl=3000\r
db3:keys=2,expires=0,avg_ttl=0\r
"""

INFO_REPLICA = """\
# Replication
role:slave
master_host:10.0.0.5
master_port:6379
master_link_status:down
master_repl_offset:77
connected_slaves:0
# Persistence
loading:1
"""


def test_parse_info_primary() -> None:
    info = parse_info(INFO_PRIMARY)
    assert info == KeyValueInfo(
        version="7.0.15", uptime_s=42, connected_clients=3, used_memory=993312,
        maxmemory=268435456, maxmemory_policy="allkeys-lru", keys_per_db={0: 5, 3: 2},
        expires_per_db={0: 1, 3: 0}, loading=False, rdb_bgsave_in_progress=False,
        rdb_last_bgsave_status="ok", rdb_last_save_time=1796216559,
        rdb_changes_since_last_save=5, rdb_saves=2, rdb_last_load_keys_loaded=9,
        rdb_last_load_keys_expired=1, aof_enabled=True, aof_rewrite_in_progress=False,
        aof_rewrite_scheduled=False, aof_last_bgrewrite_status="ok", aof_last_write_status="ok",
        aof_rewrites=1, role="master", connected_replicas=1, master_repl_offset=1234,
        raw=info.raw,
    )  # fmt: skip
    assert info.keys == 7
    assert info.raw["errorstat_NOAUTH"] == "count=2"


def test_parse_info_replica_and_missing_fields() -> None:
    info = parse_info(INFO_REPLICA)
    assert (info.role, info.master_host, info.master_port) == ("slave", "10.0.0.5", 6379)
    assert info.master_link_status == "down" and info.master_repl_offset == 77
    assert info.loading and info.keys == 0
    assert info.rdb_saves is None and info.aof_rewrites is None and info.version == ""
    assert parse_info("") == KeyValueInfo()
    assert parse_info("uptime_in_seconds:soon\nmaster_port:x\n").uptime_s == 0


# -- redis-check-rdb -------------------------------------------------------------------------

CHECK_OK = """\
[offset 0] Checking RDB file dump.rdb
[offset 27] AUX FIELD redis-ver = '7.0.15'
[offset 82] Selecting DB ID 0
[offset 139] Checksum OK
[offset 139] \\o/ RDB looks OK! \\o/
[info] 10003 keys read
[info] 1 expires
[info] 0 already expired
"""

CHECK_TRUNCATED = """\
[offset 0] Checking RDB file cut.rdb
[offset 82] Selecting DB ID 0
--- RDB ERROR DETECTED ---
[offset 100] Unexpected EOF reading RDB file
[additional info] While doing: read-object-value
[additional info] Reading key 'customer:alice@example.com'
[additional info] Reading type 0 (string)
[info] 2 keys read
[info] 0 expires
[info] 0 already expired
"""


def test_check_ok_counts_keys() -> None:
    check = parse_rdb_check(CHECK_OK, 0, "dump.rdb")
    assert (check.keys, check.expires, check.already_expired) == (10003, 1, 0)


def test_check_error_quotes_redis_without_key_names() -> None:
    with pytest.raises(RuntimeFailure) as caught:
        parse_rdb_check(CHECK_TRUNCATED, 1, "/data/dump.rdb")
    assert caught.value.message == (
        "redis-check-rdb rejected /data/dump.rdb: [offset 100] Unexpected EOF reading RDB "
        "file; [additional info] While doing: read-object-value; [additional info] Reading "
        "type 0 (string)"
    )
    assert caught.value.fields == {"path": "/data/dump.rdb", "reason": "invalid_rdb",
                                   "exit_code": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("output", "code", "message"),
    [
        ("[offset 0] Checking RDB file x.rdb\n", 1, "exited with code 1"),
        (CHECK_OK, 2, "exited with code 2"),  # a non-zero exit fails, whatever it printed
        ("[offset 0] Checking RDB file x.rdb\n[info] 0 keys read\n", 0, "exited with code 0"),
        (CHECK_TRUNCATED, 0, "Unexpected EOF"),  # an error block fails, whatever the exit
    ],
)
def test_check_failures(output: str, code: int, message: str) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        parse_rdb_check(output, code, "x.rdb")


# -- BGSAVE and AOF rewrite ------------------------------------------------------------------

BEFORE = KeyValueInfo(rdb_saves=3, rdb_last_save_time=100, rdb_last_bgsave_status="ok")


@pytest.mark.parametrize(
    ("now", "started", "expected"),
    [
        (replace(BEFORE, rdb_bgsave_in_progress=True, rdb_saves=4), True, "pending"),
        (BEFORE, True, "pending"),  # scheduled: no save has started since (the counter says)
        (replace(BEFORE, rdb_saves=4, rdb_last_save_time=101), False, "done"),
        (replace(BEFORE, rdb_saves=4, rdb_last_bgsave_status="err"), True, "failed"),
        (replace(BEFORE, rdb_saves=4), True, "failed"),  # ran, LASTSAVE did not move
    ],
)
def test_save_state(now: KeyValueInfo, started: bool, expected: str) -> None:
    assert save_state(BEFORE, now, started=started) == expected


def test_save_state_without_a_save_counter() -> None:
    """Redis < 7.0: whether the save was seen running decides what an ``err`` means."""
    before = replace(BEFORE, rdb_saves=None, rdb_last_bgsave_status="err")
    stale = replace(before, rdb_last_save_time=100)
    assert save_state(before, stale, started=False) == "pending"
    assert save_state(before, stale, started=True) == "failed"
    ok = replace(before, rdb_last_bgsave_status="ok", rdb_last_save_time=101)
    assert save_state(before, ok, started=True) == "done"


AOF_BEFORE = KeyValueInfo(aof_rewrites=0, aof_last_bgrewrite_status="ok")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (replace(AOF_BEFORE, aof_enabled=True, aof_rewrite_in_progress=True), "pending"),
        (replace(AOF_BEFORE, aof_enabled=True, aof_rewrite_scheduled=True), "pending"),
        (replace(AOF_BEFORE, aof_enabled=True), "pending"),  # not started yet
        (replace(AOF_BEFORE, aof_enabled=True, aof_rewrites=1), "done"),
        (
            replace(AOF_BEFORE, aof_enabled=True, aof_rewrites=1, aof_last_bgrewrite_status="err"),
            "failed",
        ),
    ],
)
def test_rewrite_state(now: KeyValueInfo, expected: str) -> None:
    assert rewrite_state(AOF_BEFORE, now) == expected


# -- client errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "exc", "reason", "text"),
    [
        (None, redis.AuthenticationError("Authentication required."), "auth_required",
         "PING: authentication required (no password given): Authentication required."),
        ("s3cret-pass", redis.AuthenticationError("invalid username-password pair"),
         "auth_failed", "PING: authentication failed (wrong password?)"),
        ("s3cret-pass", redis.ConnectionError("Error 111 connecting. Connection refused."),
         "unreachable", "PING: cannot connect: Error 111"),
        ("s3cret-pass", redis.TimeoutError("Timeout reading from socket"), "timeout",
         "PING: no answer within 5 s"),
        ("s3cret-pass", redis.BusyLoadingError("LOADING"), "loading", "still loading"),
        ("s3cret-pass", redis.ResponseError("unknown command 'X', with args beginning with: "
         "'s3cret-pass'"), "error", "PING failed: unknown command 'X', with args beginning "
         "with: '***'"),
    ],
)  # fmt: skip
def test_client_errors_say_where_and_never_the_password(
    password: str | None, exc: Exception, reason: str, text: str
) -> None:
    client = KeyValueClient("127.0.0.1", 6390, password)
    failure = client._failure(exc, "PING")
    assert failure.fields == {"host": "127.0.0.1", "port": 6390, "reason": reason}
    assert failure.message.startswith("Key Value at 127.0.0.1:6390: ")
    assert text in failure.message
    assert "s3cret-pass" not in failure.message
    client.close()


def test_client_unreachable_and_not_ready() -> None:
    with KeyValueClient("127.0.0.1", 1, "pw", timeout_s=1) as client:
        with pytest.raises(RuntimeFailure, match="cannot connect") as caught:
            client.ping()
        assert caught.value.fields["reason"] == "unreachable"
        with pytest.raises(RuntimeFailure, match=r"not ready after 0\.2 s \(PING: cannot connect"):
            client.wait_ready(0.2)
        with pytest.raises(RuntimeFailure, match="exited before it was ready"):
            client.wait_ready(5, alive=lambda: False)


# -- config file guard -----------------------------------------------------------------------


def test_write_config_refuses_the_aof_trap(tmp_path: Path) -> None:
    cfg = replace(CFG, data_dir=tmp_path)
    target = tmp_path / "redis.conf"
    write_config(cfg, target, current())
    assert target.read_text() == render_config(cfg)
    assert target.stat().st_mode & 0o777 == 0o600
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0010")
    assert aof_missing(tmp_path)
    with pytest.raises(RuntimeFailure, match="would ignore the snapshot and start empty"):
        write_config(cfg, target, current())
    write_config(cfg, target, current(), appendonly=False)
    assert "appendonly no\n" in target.read_text()
    (tmp_path / "appendonlydir").mkdir()
    write_config(cfg, target, current())
    assert "appendonly yes\n" in target.read_text()
    assert sorted(os.listdir(tmp_path)) == ["appendonlydir", "dump.rdb", "redis.conf"]
