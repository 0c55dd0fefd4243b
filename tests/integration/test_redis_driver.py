"""The Key Value driver against real redis-server processes (no mocks): rendered config,
authentication, memory policy, persistence across restarts, sealed backups, restores into a
new data directory (and the AOF trap), failures reported with Redis's own words.

Servers run as the account Shipyard would use (``service_account("redis")``: the Debian
``redis`` account when the tests run as root) in a directory of their own under /tmp (pytest's
are 0700 and owned by root); every server a test starts is stopped when it ends, pass or fail.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shipyard.drivers.local.sealed import SealError
from shipyard.drivers.local.users import Account, give, service_account
from shipyard.drivers.redis.backup import (
    backup,
    check_rdb,
    finish_restore,
    prepare_restore,
    snapshot,
)
from shipyard.drivers.redis.client import KeyValueClient
from shipyard.drivers.redis.config import KeyValueConfig, plan_memory, render_config
from shipyard.drivers.redis.files import config_path, write_config
from shipyard.drivers.redis.standalone import LocalServer
from shipyard.errors import RuntimeFailure
from tests.support.harness import free_port, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]

PASSWORD = secrets.token_urlsafe(24)
KEY = secrets.token_bytes(32)


@dataclass
class Instance:
    cfg: KeyValueConfig
    server: LocalServer

    @property
    def config(self) -> Path:
        return self.server.config_path

    def start(self, timeout_s: float = 10) -> KeyValueClient:
        self.server.start()
        client = self.client()
        try:
            client.wait_ready(timeout_s, alive=self.server.alive)
        except RuntimeFailure as exc:
            raise AssertionError(f"{exc.message}\nserver log:\n{self.server.log()}") from None
        return client

    def restart(self) -> KeyValueClient:
        assert self.server.stop() == 0, self.server.log()
        return self.start()

    def client(self, password: str | None = PASSWORD) -> KeyValueClient:
        return KeyValueClient("127.0.0.1", self.cfg.port, password)

    def raw(self, password: str | None = PASSWORD, db: int = 0) -> redis.Redis:
        """A plain redis-py client (its default retries off: an auth failure fails at once)."""
        return redis.Redis(
            port=self.cfg.port, password=password, db=db, protocol=2, decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip


@pytest.fixture
def account() -> Account:
    return service_account("redis")


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shipyard-redis-test-", dir="/tmp"))
    path.chmod(0o711)  # the redis account reaches its data directories by path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make(root: Path, account: Account) -> Iterator[Callable[..., Instance]]:
    """``make(name, write=True, **config)``: an Instance (not started) with its data directory
    owned by the account and, unless ``write=False``, its rendered config."""
    made: list[Instance] = []

    def make(name: str, *, write: bool = True, **overrides: object) -> Instance:
        data_dir = root / name
        give(data_dir, account, 0o700)
        fields: dict[str, object] = {
            "port": free_port(),
            "data_dir": data_dir,
            "password": PASSWORD,
            "maxmemory_bytes": plan_memory("starter"),
            **overrides,
        }
        cfg = KeyValueConfig(**fields)  # type: ignore[arg-type]
        if write:
            write_config(cfg, config_path(cfg), account)
        server = LocalServer(config_path(cfg), root / f"{name}.log", user=account.name)
        made.append(Instance(cfg, server))
        return made[-1]

    try:
        yield make
    finally:
        for instance in made:
            instance.server.stop(grace_s=10)


def fill(r: redis.Redis, count: int, prefix: str = "key") -> dict[str, str]:
    """``count`` string keys with distinct values, written through a pipeline."""
    data = {
        f"{prefix}:{i}": hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(count)
    }
    pipe = r.pipeline(transaction=False)
    for name, value in data.items():
        pipe.set(name, value)
    pipe.execute()
    return data


def read_all(r: redis.Redis, names: list[str]) -> list[object]:
    return list(r.mget(names))


# -- configuration, authentication -----------------------------------------------------------


def test_auth_required_and_no_clear_password(make: Callable[..., Instance]) -> None:
    kv = make("auth")
    with kv.start() as client:
        client.ping()
        # The server itself: NOAUTH without a password, WRONGPASS with a wrong one.
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            kv.raw(password=None).ping()
        with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
            kv.raw(password="not-the-password").ping()
        # Our client says so, and never repeats a password.
        with pytest.raises(RuntimeFailure) as missing:
            kv.client(password=None).ping()
        assert missing.value.fields["reason"] == "auth_required"
        with pytest.raises(RuntimeFailure) as wrong:
            kv.client(password="wrong-pass-123").wait_ready(2)
        assert wrong.value.fields["reason"] == "auth_failed"
        assert "wrong-pass-123" not in wrong.value.message
        # The password is nowhere in clear: not in the file, not on the command line.
        text = kv.config.read_text()
        assert PASSWORD not in text
        assert f"#{hashlib.sha256(PASSWORD.encode()).hexdigest()}" in text
        cmdline = Path(f"/proc/{kv.server.pid}/cmdline").read_bytes()
        assert PASSWORD.encode() not in cmdline
        assert cmdline.startswith(f"redis-server 127.0.0.1:{kv.cfg.port}".encode())  # its title


def test_memory_policy_and_persistence_applied(make: Callable[..., Instance]) -> None:
    kv = make("settings", maxmemory_bytes=plan_memory("free"), maxmemory_policy="volatile-lfu")
    with kv.start() as client:
        assert client.config_get("maxmemory") == str(25 * 1024 * 1024)
        assert client.config_get("maxmemory-policy") == "volatile-lfu"
        assert client.config_get("appendonly") == "yes"
        assert client.config_get("appendfsync") == "everysec"
        assert client.config_get("save") == "3600 1 300 100 60 10000"
        assert client.config_get("dir") == str(kv.cfg.data_dir)
        assert client.config_get("bind") == "127.0.0.1"
        info = client.info()
        assert info.aof_enabled and info.aof_last_write_status == "ok"
        assert info.maxmemory == 25 * 1024 * 1024 and info.maxmemory_policy == "volatile-lfu"
        assert info.role == "master" and info.connected_clients >= 1
        assert info.version.startswith("7.") and info.rdb_saves is not None
        assert (kv.cfg.data_dir / "appendonlydir").is_dir()
        # DEBUG and CONFIG SET dir are refused (no writing files outside the data directory).
        with pytest.raises(RuntimeFailure, match="protected config"):
            client.config_set("dir", "/tmp")


def test_data_survives_restart(make: Callable[..., Instance]) -> None:
    kv = make("restart")
    kv.start().close()
    data = fill(kv.raw(), 500)
    kv.raw().hset("h", mapping={"a": "1", "b": "2"})
    with kv.restart() as client:  # SIGTERM, then start again: the AOF has everything
        assert client.info().keys == 501
        assert read_all(kv.raw(), list(data)) == list(data.values())
        assert kv.raw().hgetall("h") == {"a": "1", "b": "2"}


def test_wait_ready_waits_while_the_dataset_loads(make: Callable[..., Instance]) -> None:
    kv = make("loading")
    kv.start().close()
    fill(kv.raw(), 10_000)
    assert kv.server.stop() == 0
    # A test-only knob of Redis: 100 µs per key loaded, about 1 s for 10,000 keys.
    kv.config.write_text(kv.config.read_text() + "key-load-delay 100\n")
    kv.server.start()
    raw = kv.raw()

    def loading() -> bool:
        try:
            raw.ping()
        except redis.BusyLoadingError:
            return True
        except redis.ConnectionError:
            pass
        return False

    wait_for(loading, timeout=5, interval=0.01)  # LOADING is what a client meets first
    info = kv.client().wait_ready(20, alive=kv.server.alive)
    assert not info.loading and info.keys == 10_000  # INFO counts keys as they load


# -- backup and restore ----------------------------------------------------------------------


def test_backup_restore_roundtrip(
    make: Callable[..., Instance], root: Path, account: Account
) -> None:
    source = make("source")
    source.start().close()
    data = fill(source.raw(), 10_000)
    source.raw(db=3).set("in-db3", "three")
    source.raw().rpush("list", "a", "b", "c")
    source.raw().set("ttl-key", "v", ex=3600)
    dest = root / "backups" / "kv.sealed"
    dest.parent.mkdir()

    with source.client() as client:
        made = backup(client, source.cfg.data_dir, dest, KEY, timeout_s=30)
    assert made.keys == 10_003 and made.expires == 1
    assert made.size_bytes == dest.stat().st_size > made.rdb_bytes > 0
    assert made.started_at <= made.finished_at
    assert dest.read_bytes()[:5] != b"REDIS" and b"REDIS" not in dest.read_bytes()[:4096]
    assert dest.stat().st_mode & 0o777 == 0o600
    assert list(dest.parent.iterdir()) == [dest]  # the scratch copy is gone
    original_rdb = (source.cfg.data_dir / "dump.rdb").read_bytes()
    assert hashlib.sha256(original_rdb).hexdigest() == made.rdb_sha256

    # Restore into a new data directory; the original is untouched.
    target = make("target", write=False)
    start = prepare_restore(dest, KEY, target.cfg, target.config, account)
    assert start.rdb.keys == 10_003 and start.rdb_sha256 == made.rdb_sha256
    assert start.command == f"exec redis-server {target.config}"
    assert "appendonly no" in target.config.read_text()
    assert (target.cfg.data_dir / "dump.rdb").stat().st_uid == account.uid
    target.server.start()
    with target.client() as client:
        info = finish_restore(client, target.config, expected=start.rdb, timeout_s=30)
        assert info.aof_enabled and info.keys == 10_003
        assert client.config_get("appendonly") == "yes"
    text = target.config.read_text()
    assert "appendonly yes" in text.splitlines() and PASSWORD not in text
    assert target.config.stat().st_mode & 0o777 == 0o600

    def intact(kv: Instance) -> None:
        r = kv.raw()
        assert read_all(r, list(data)) == list(data.values())
        assert r.lrange("list", 0, -1) == ["a", "b", "c"] and 0 < r.ttl("ttl-key") <= 3600
        assert kv.client().info().keys_per_db == {0: 10_002, 3: 1}

    intact(target)
    # Restarted with the file CONFIG REWRITE left: it loads the AOF, and nothing is lost.
    target.restart().close()
    intact(target)
    # Restarted with the config Shipyard renders at every start (appendonly yes): the same.
    assert target.server.stop() == 0
    write_config(target.cfg, target.config, account)
    target.start().close()
    intact(target)
    assert (source.cfg.data_dir / "dump.rdb").read_bytes() == original_rdb
    assert source.client().info().keys == 10_003


def test_the_aof_trap_is_caught(
    make: Callable[..., Instance], root: Path, account: Account
) -> None:
    """A server started with appendonly yes on a restored dump.rdb starts empty: write_config
    refuses that config, and finish_restore notices the empty server."""
    source = make("trap-source")
    source.start().close()
    fill(source.raw(), 100)
    dest = root / "trap.sealed"
    with source.client() as client:
        backup(client, source.cfg.data_dir, dest, KEY, timeout_s=30)
    target = make("trap-target", write=False)
    start = prepare_restore(dest, KEY, target.cfg, target.config, account)
    with pytest.raises(RuntimeFailure, match="would ignore the snapshot"):
        write_config(target.cfg, target.config, account)
    target.config.write_text(render_config(target.cfg))  # appendonly yes, by hand
    with target.start() as client:
        assert client.info().keys == 0  # the trap itself
        with pytest.raises(RuntimeFailure, match="holds 0 keys") as caught:
            finish_restore(client, target.config, expected=start.rdb, timeout_s=10)
        assert caught.value.fields["reason"] == "restore_incomplete"


def test_backup_waits_for_a_save_already_running(make: Callable[..., Instance], root: Path) -> None:
    kv = make("busy")
    with kv.start() as client:
        fill(kv.raw(), 2_000)
        # A slow save (a test-only knob: 500 µs per key, about 1 s), started before the last
        # write: the backup must not be that save.
        client.config_set("rdb-key-save-delay", "500")
        assert client.bgsave() == "started"
        client.config_set("rdb-key-save-delay", "0")
        kv.raw().set("written-during-the-save", "1")
        assert client.bgsave() == "in_progress"
        made = backup(client, kv.cfg.data_dir, root / "busy.sealed", KEY, timeout_s=30)
        assert made.keys == 2_001
        assert client.info().rdb_last_bgsave_status == "ok"


def test_failed_bgsave_is_reported_with_redis_status(
    make: Callable[..., Instance], root: Path
) -> None:
    kv = make("readonly")
    with kv.start() as client:
        fill(kv.raw(), 10)
        kv.cfg.data_dir.chmod(0o500)  # the server cannot create its temp-PID.rdb: like ENOSPC
        try:
            with pytest.raises(RuntimeFailure, match="rdb_last_bgsave_status:err") as failed:
                snapshot(client, timeout_s=10)
        finally:
            kv.cfg.data_dir.chmod(0o700)
        assert failed.value.fields["reason"] == "bgsave_failed"
        assert PASSWORD not in failed.value.message
        assert "Background saving error" in kv.server.log()
        backup(client, kv.cfg.data_dir, root / "after.sealed", KEY, timeout_s=10)  # recovers


def test_corrupt_or_wrongly_keyed_backup_is_refused(
    make: Callable[..., Instance], root: Path, account: Account
) -> None:
    source = make("corrupt-source")
    source.start().close()
    fill(source.raw(), 1_000)
    dest = root / "good.sealed"
    with source.client() as client:
        backup(client, source.cfg.data_dir, dest, KEY, timeout_s=30)
    sealed = bytearray(dest.read_bytes())
    sealed[len(sealed) // 2] ^= 0xFF
    sealed[len(sealed) // 2 + 1] ^= 0x01
    flipped = root / "flipped.sealed"
    flipped.write_bytes(bytes(sealed))

    target = make("corrupt-target", write=False)
    with pytest.raises(SealError, match="fails authentication") as bad:
        prepare_restore(flipped, KEY, target.cfg, target.config, account)
    assert bad.value.fields["reason"] == "tampered"
    with pytest.raises(SealError, match="wrong key") as wrong:
        prepare_restore(dest, secrets.token_bytes(32), target.cfg, target.config, account)
    assert wrong.value.fields["reason"] == "wrong_key"
    assert list(target.cfg.data_dir.iterdir()) == []  # no partial dump.rdb, no config
    # The data directory of a running instance is never a restore target.
    with pytest.raises(RuntimeFailure, match="new data directory"):
        prepare_restore(dest, KEY, source.cfg, source.config, account)


def test_check_rdb_rejects_a_truncated_rdb(make: Callable[..., Instance], root: Path) -> None:
    kv = make("check")
    with kv.start() as client:
        fill(kv.raw(), 300, prefix="secret-customer")
        snapshot(client, timeout_s=10)
    rdb = root / "whole.rdb"
    shutil.copyfile(kv.cfg.data_dir / "dump.rdb", rdb)
    assert check_rdb(rdb).keys == 300
    cut = root / "cut.rdb"
    cut.write_bytes(rdb.read_bytes()[: rdb.stat().st_size // 2])
    with pytest.raises(RuntimeFailure, match="redis-check-rdb rejected") as rejected:
        check_rdb(cut)
    assert "Unexpected EOF" in rejected.value.message
    assert "secret-customer" not in rejected.value.message  # key names stay out
    assert rejected.value.fields["reason"] == "invalid_rdb"
    os.truncate(cut, 0)
    with pytest.raises(RuntimeFailure, match="redis-check-rdb rejected"):
        check_rdb(cut)
