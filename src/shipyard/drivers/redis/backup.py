"""Backups of a Key Value instance (a sealed RDB snapshot) and restores into a new data directory.

Backup (:func:`backup`), against the running server:

1. a fresh snapshot (:func:`snapshot`): note INFO's ``rdb_saves`` and ``rdb_last_save_time``
   (LASTSAVE), wait until the server's clock has left LASTSAVE's second (LASTSAVE counts whole
   seconds: a save finishing in the same second as the last one would not move it), ``BGSAVE
   SCHEDULE`` (scheduled after a running AOF rewrite rather than refused; "Background save
   already in progress" means a save that may predate the caller's writes: wait for it to end
   and ask again), then wait until ``rdb_bgsave_in_progress:0``, a save has started since
   (``rdb_saves`` grew), LASTSAVE changed and ``rdb_last_bgsave_status:ok``. A save that ends
   with ``err`` (disk full, permissions) fails with Redis's status;
2. ``dump.rdb`` copied (hashed on the way) to a private scratch directory beside the
   destination, checked with ``redis-check-rdb`` (a non-zero exit, an error block or no "RDB
   looks OK" is a failed backup; its key counts are what the backup holds), sealed into the
   destination with the caller's key (sealed.py), the scratch copy removed.

Restore, around the caller's own process start:

* :func:`prepare_restore` unseals the backup into a NEW data directory (one holding no dataset;
  the original is never touched) as ``dump.rdb`` owned by the server's account, checks it, and
  writes the config with ``appendonly no``: a server started with ``appendonly yes`` and no AOF
  directory ignores dump.rdb and starts empty (and its next save overwrites the snapshot);
* the caller starts the server with :attr:`RestoreStart.command` (and must not rewrite the
  config meanwhile);
* :func:`finish_restore` waits until the dataset is loaded and checks the key count against
  the backup's, ``CONFIG SET appendonly yes``, waits for the AOF rewrite
  (``aof_rewrite_in_progress:0``, ``aof_rewrite_scheduled:0``, ``aof_last_bgrewrite_status:ok``),
  then ``CONFIG REWRITE`` so the file says ``appendonly yes``, and checks that the rewritten
  file holds no clear password (Redis writes the ACL line back with the hash). Idempotent: run
  again after a crash it finds the AOF on and only rewrites and checks the file.

Every wait has a timeout; failures are RuntimeFailure (SealError for the sealed file), none
names the password or the key.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shipyard.clock import Clock, poll_while
from shipyard.drivers.local.sealed import seal, unseal
from shipyard.drivers.local.users import Account, give
from shipyard.drivers.redis.client import KeyValueClient
from shipyard.drivers.redis.config import AOF_DIR, RDB_FILE, KeyValueConfig, server_command
from shipyard.drivers.redis.files import has_data, own, writable_by, write_config
from shipyard.drivers.redis.info import KeyValueInfo
from shipyard.errors import NoDiskSpace, RuntimeFailure

CHECK_RDB = "redis-check-rdb"
DEFAULT_TIMEOUT_S = 600.0
State = Literal["pending", "done", "failed"]

_INFO_LINE = re.compile(r"^\[info\] (\d+) (keys read|expires|already expired)$")
_ERROR_MARK = "--- RDB ERROR DETECTED ---"
_OK_MARK = "RDB looks OK!"


@dataclass(frozen=True)
class RdbCheck:
    """What redis-check-rdb read in a valid RDB file."""

    keys: int
    expires: int  # keys with a TTL
    already_expired: int  # keys whose TTL had passed when it was checked


@dataclass(frozen=True)
class KeyValueBackup:
    path: Path  # the sealed file
    size_bytes: int  # of the sealed file
    rdb_bytes: int
    rdb_sha256: str  # of the plain RDB
    keys: int  # in the RDB (redis-check-rdb), every database
    expires: int
    snapshot_at: int  # LASTSAVE of the snapshot, Unix seconds
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class RestoreStart:
    """What the caller does next: start the server with ``command`` (config at
    ``config_path``, files in ``data_dir``), then ``finish_restore(client, config_path,
    expected=rdb)``."""

    data_dir: Path
    config_path: Path
    command: str
    rdb: RdbCheck
    rdb_sha256: str


# -- redis-check-rdb -------------------------------------------------------------------------


def check_rdb(
    path: Path, *, binary: str = CHECK_RDB, timeout_s: float = DEFAULT_TIMEOUT_S,
    label: str | None = None,
) -> RdbCheck:  # fmt: skip
    """``redis-check-rdb path``; RuntimeFailure with its error lines (``label`` names the file
    in messages, e.g. the original of a scratch copy)."""
    name = label or str(path)
    try:
        proc = subprocess.run(
            [binary, str(path)], capture_output=True, text=True, errors="replace",
            timeout=timeout_s, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(
            f"redis-check-rdb did not finish checking {name} within {timeout_s:g} s",
            fields={"path": name, "reason": "timeout"},
        ) from None
    except OSError as exc:
        raise RuntimeFailure(
            f"could not run {binary} to check {name}: {exc.strerror or exc} "
            "(it comes with the redis-tools package)",
            fields={"path": name, "reason": "missing_tool"},
        ) from None
    return parse_rdb_check(proc.stdout + proc.stderr, proc.returncode, name)


def parse_rdb_check(output: str, returncode: int, name: str) -> RdbCheck:
    """redis-check-rdb's verdict on ``name``. Its error block is quoted without the lines that
    name a key (user data stays out of messages and logs)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    counts: dict[str, int] = {}
    for line in lines:
        match = _INFO_LINE.match(line)
        if match:
            counts[match.group(2)] = int(match.group(1))
    failed = returncode != 0 or _ERROR_MARK in lines or not any(_OK_MARK in x for x in lines)
    if failed:
        problems = _error_lines(lines)
        detail = "; ".join(problems) if problems else f"exited with code {returncode}"
        raise RuntimeFailure(
            f"redis-check-rdb rejected {name}: {detail}",
            fields={"path": name, "reason": "invalid_rdb", "exit_code": returncode},
        )
    return RdbCheck(
        keys=counts.get("keys read", 0),
        expires=counts.get("expires", 0),
        already_expired=counts.get("already expired", 0),
    )


def _error_lines(lines: list[str]) -> list[str]:
    if _ERROR_MARK not in lines:
        return [line for line in lines if "error" in line.lower()][:3]
    block = lines[lines.index(_ERROR_MARK) + 1 :]
    kept = [
        line for line in block
        if not line.startswith("[info]") and "Reading key" not in line
    ]  # fmt: skip
    return kept[:4]


# -- snapshot --------------------------------------------------------------------------------


def save_state(before: KeyValueInfo, now: KeyValueInfo, *, started: bool) -> State:
    """Where a BGSAVE asked for after ``before`` stands in ``now``. ``started`` (the reply said
    started, or INFO showed a save in progress) only counts on a server without ``rdb_saves``
    (Redis < 7.0): there it is what tells this save's ``err`` status from an older one's."""
    if now.rdb_bgsave_in_progress:
        return "pending"
    if before.rdb_saves is not None and now.rdb_saves is not None:
        started = now.rdb_saves > before.rdb_saves
    if not started:
        return "pending"  # scheduled behind an AOF rewrite
    if now.rdb_last_bgsave_status != "ok":
        return "failed"
    if now.rdb_last_save_time <= before.rdb_last_save_time:
        return "failed"  # a save ran and LASTSAVE did not move: the clock went back?
    return "done"


def snapshot(
    client: KeyValueClient, *, timeout_s: float = DEFAULT_TIMEOUT_S, clock: Clock | None = None
) -> KeyValueInfo:
    """A new RDB snapshot of everything written before the call (see the module docstring);
    INFO once it is on disk."""
    clock = clock or client.clock
    deadline = clock.monotonic() + timeout_s
    while True:
        before = client.info()
        _leave_second(client, clock, before.rdb_last_save_time, deadline)
        reply = client.bgsave()
        if reply != "in_progress":
            break
        _wait_save(client, clock, deadline, timeout_s)
    seen = [reply == "started"]

    def probe() -> tuple[State, KeyValueInfo]:
        now = client.info()
        seen[0] = seen[0] or now.rdb_bgsave_in_progress
        return save_state(before, now, started=seen[0]), now

    state, now = poll_while(
        clock, probe, lambda v: v[0] == "pending",
        timeout_s=max(0.0, deadline - clock.monotonic()), interval_s=0.05, backoff=1.5,
        max_interval_s=1.0,
    )  # fmt: skip
    if state == "failed":
        raise RuntimeFailure(
            f"Key Value at {client.where}: BGSAVE failed: rdb_last_bgsave_status:"
            f"{now.rdb_last_bgsave_status or '?'}, LASTSAVE {now.rdb_last_save_time} "
            f"(was {before.rdb_last_save_time}); the server's log says why (disk full, "
            "permissions of its data directory)",
            fields={"host": client.host, "port": client.port, "reason": "bgsave_failed",
                    "rdb_last_bgsave_status": now.rdb_last_bgsave_status},
        )  # fmt: skip
    if state == "pending":
        raise RuntimeFailure(
            f"Key Value at {client.where}: BGSAVE did not finish within {timeout_s:g} s "
            f"(rdb_bgsave_in_progress:{int(now.rdb_bgsave_in_progress)})",
            fields={"host": client.host, "port": client.port, "reason": "timeout"},
        )
    return now


def _leave_second(client: KeyValueClient, clock: Clock, lastsave: int, deadline: float) -> None:
    """Wait until the server's clock is past the second of ``lastsave``, so a save that
    succeeds from now on moves LASTSAVE."""
    wait = lastsave + 1 - client.server_time()
    if wait > 0:
        clock.sleep(min(wait + 0.01, max(0.0, deadline - clock.monotonic())))


def _wait_save(client: KeyValueClient, clock: Clock, deadline: float, timeout_s: float) -> None:
    """Wait until the save already running has ended."""
    last = poll_while(
        clock, client.info, lambda i: i.rdb_bgsave_in_progress,
        timeout_s=max(0.0, deadline - clock.monotonic()), interval_s=0.05, backoff=1.5,
        max_interval_s=1.0,
    )  # fmt: skip
    if last.rdb_bgsave_in_progress:
        raise RuntimeFailure(
            f"Key Value at {client.where}: a background save already running did not end "
            f"within {timeout_s:g} s",
            fields={"host": client.host, "port": client.port, "reason": "timeout"},
        )


# -- backup ----------------------------------------------------------------------------------


def backup(
    client: KeyValueClient,
    data_dir: Path,
    dest: Path,
    key: bytes,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    scratch_dir: Path | None = None,
    check_binary: str = CHECK_RDB,
) -> KeyValueBackup:
    """Snapshot the server whose data directory is ``data_dir`` and seal the snapshot into
    ``dest`` (replaced atomically) with ``key`` (32 bytes). The plain copy lives in a private
    directory under ``scratch_dir`` (default: ``dest``'s directory) until it is sealed."""
    clock = client.clock
    started_at = clock.now()
    server_dir = client.config_get("dir")
    if Path(server_dir).resolve() != data_dir.resolve():
        raise RuntimeFailure(
            f"Key Value at {client.where} keeps its data in {server_dir}, not {data_dir}: "
            "is this the right server?",
            fields={"host": client.host, "port": client.port, "data_dir": str(data_dir)},
        )
    rdb = data_dir / client.config_get("dbfilename")
    info = snapshot(client, timeout_s=timeout_s, clock=clock)
    scratch = Path(tempfile.mkdtemp(prefix=".kv-backup-", dir=scratch_dir or dest.parent))
    try:
        plain = scratch / RDB_FILE
        size, sha256 = _copy_hashed(rdb, plain, dest)
        check = check_rdb(plain, binary=check_binary, timeout_s=timeout_s, label=str(rdb))
        sealed = seal(plain, dest, key)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if sealed.plain_sha256 != sha256:
        dest.unlink(missing_ok=True)
        raise RuntimeFailure(
            f"the copy of {rdb} changed while it was sealed: backup discarded",
            fields={"path": str(dest)},
        )
    return KeyValueBackup(
        path=dest, size_bytes=sealed.sealed_bytes, rdb_bytes=size, rdb_sha256=sha256,
        keys=check.keys, expires=check.expires, snapshot_at=info.rdb_last_save_time,
        started_at=started_at, finished_at=clock.now(),
    )  # fmt: skip


def _copy_hashed(src: Path, dst: Path, dest: Path) -> tuple[int, str]:
    """Copy ``src`` to ``dst``; (bytes, sha256). NoDiskSpace up front when ``dst``'s and
    ``dest``'s file systems cannot hold the copy and the sealed file."""
    try:
        with open(src, "rb") as reader:  # the snapshot of the open inode, renames or not
            size = os.fstat(reader.fileno()).st_size
            _need_space(dst.parent, dest.parent, size)
            digest = hashlib.sha256()
            with open(dst, "wb") as writer:
                while block := reader.read(1024 * 1024):
                    digest.update(block)
                    writer.write(block)
    except OSError as exc:
        raise RuntimeFailure(
            f"could not copy {src} for the backup: {exc.strerror or exc}",
            fields={"path": str(src)},
        ) from None
    return size, digest.hexdigest()


def _need_space(scratch: Path, dest: Path, size: int) -> None:
    margin = 16 * 1024 * 1024
    same = os.stat(scratch).st_dev == os.stat(dest).st_dev
    needs = [(scratch, 2 * size + margin)] if same else [(scratch, size + margin),
                                                         (dest, size + margin)]  # fmt: skip
    for where, needed in needs:
        free = shutil.disk_usage(where).free
        if free < needed:
            raise NoDiskSpace(
                f"a Key Value backup needs {needed // 2**20} MiB free in {where}, "
                f"{free // 2**20} MiB are",
                fields={"path": str(where), "needed_bytes": needed, "free_bytes": free},
            )


# -- restore ---------------------------------------------------------------------------------


def prepare_restore(
    backup_path: Path,
    key: bytes,
    cfg: KeyValueConfig,
    config_path: Path,
    account: Account,
    *,
    check_binary: str = CHECK_RDB,
    redis_server: str = "redis-server",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> RestoreStart:
    """Unseal ``backup_path`` into ``cfg.data_dir`` (a new data directory: RuntimeFailure if it
    holds a dataset) as dump.rdb owned by ``account``, check it, and write the restore config
    (``appendonly no``) to ``config_path``, whose directory ``account`` must be able to write
    (CONFIG REWRITE replaces the file)."""
    data_dir = cfg.data_dir
    if has_data(data_dir):
        raise RuntimeFailure(
            f"a restore goes into a new data directory, and {data_dir} already holds a "
            f"dataset ({RDB_FILE} or {AOF_DIR}/): nothing was changed",
            fields={"data_dir": str(data_dir)},
        )
    give(data_dir, account, 0o700)
    if not writable_by(config_path.parent, account):
        raise RuntimeFailure(
            f"the restore's config {config_path} must be in a directory the account "
            f"'{account.name}' can write (CONFIG REWRITE replaces the file): use the data "
            "directory",
            fields={"config_path": str(config_path), "user": account.name},
        )
    incoming = data_dir / f".{RDB_FILE}.restore"
    try:
        unsealed = unseal(backup_path, incoming, key)
        check = check_rdb(
            incoming, binary=check_binary, timeout_s=timeout_s, label=f"{backup_path} (unsealed)"
        )
        own(incoming, account, 0o600)
        os.replace(incoming, data_dir / RDB_FILE)
    finally:
        incoming.unlink(missing_ok=True)
    write_config(cfg, config_path, account, appendonly=False)
    return RestoreStart(
        data_dir=data_dir,
        config_path=config_path,
        command=server_command(config_path, redis_server),
        rdb=check,
        rdb_sha256=unsealed.plain_sha256,
    )


def rewrite_state(before: KeyValueInfo, now: KeyValueInfo) -> State:
    """Where the AOF rewrite that ``CONFIG SET appendonly yes`` started after ``before``
    stands in ``now``."""
    if now.aof_rewrite_in_progress or now.aof_rewrite_scheduled:
        return "pending"
    was, now_count = before.aof_rewrites, now.aof_rewrites
    if was is not None and now_count is not None and now_count <= was:
        return "pending"
    if now.aof_last_bgrewrite_status != "ok" or not now.aof_enabled:
        return "failed"
    return "done"


def finish_restore(
    client: KeyValueClient,
    config_path: Path,
    *,
    expected: RdbCheck | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> KeyValueInfo:
    """Once the server started by :func:`prepare_restore`'s command runs: wait until loaded,
    check its keys against ``expected`` (the backup's RdbCheck), turn the AOF on, wait for its
    rewrite, CONFIG REWRITE, check the file. INFO at the end. Give apps the server only once
    this returned: until then it may be the empty server the key check refuses."""
    clock = client.clock
    deadline = clock.monotonic() + timeout_s
    info = client.wait_ready(timeout_s)
    if expected is not None:
        _check_loaded(client, info, expected)
    if not info.aof_enabled:
        before = info
        client.config_set("appendonly", "yes")

        def probe() -> tuple[State, KeyValueInfo]:
            now = client.info()
            return rewrite_state(before, now), now

        state, info = poll_while(
            clock, probe, lambda v: v[0] == "pending",
            timeout_s=max(0.0, deadline - clock.monotonic()), interval_s=0.05, backoff=1.5,
            max_interval_s=1.0,
        )  # fmt: skip
        if state != "done":
            what = "did not finish in time" if state == "pending" else "failed"
            raise RuntimeFailure(
                f"Key Value at {client.where}: the AOF rewrite after CONFIG SET appendonly yes "
                f"{what} (aof_last_bgrewrite_status:{info.aof_last_bgrewrite_status or '?'}, "
                f"aof_rewrite_in_progress:{int(info.aof_rewrite_in_progress)}); the server's "
                "log says why",
                fields={"host": client.host, "port": client.port, "reason": "aof_rewrite"},
            )
    client.config_rewrite()
    _check_rewritten(config_path, client)
    return client.info()


def _check_loaded(client: KeyValueClient, info: KeyValueInfo, expected: RdbCheck) -> None:
    """The restored server holds the backup's keys: exactly (keys loaded + keys expired at
    load = keys in the RDB) when it loaded dump.rdb, and not none when the AOF is on already."""
    loaded, dropped = info.rdb_last_load_keys_loaded, info.rdb_last_load_keys_expired
    live = expected.keys - expected.already_expired
    if not info.aof_enabled and loaded is not None and dropped is not None:
        wrong = loaded + dropped != expected.keys
    else:
        wrong = info.keys == 0 and live > 0
    if wrong:
        raise RuntimeFailure(
            f"Key Value at {client.where}: the restored server holds {info.keys} keys "
            f"(loaded {loaded}), the backup {expected.keys}. Was it started with appendonly "
            "yes? (It then ignores dump.rdb and starts empty: use the config prepare_restore "
            "wrote.)",
            fields={"host": client.host, "port": client.port, "reason": "restore_incomplete",
                    "keys": info.keys, "expected_keys": expected.keys},
        )  # fmt: skip


def _check_rewritten(config_path: Path, client: KeyValueClient) -> None:
    """After CONFIG REWRITE: the file says appendonly yes and holds no clear password (no
    ``requirepass``, no ``>password`` ACL rule, no token equal to it); made 0600 again (Redis
    writes it 0644 less its umask)."""
    try:
        text = config_path.read_text()
        config_path.chmod(0o600)
    except OSError as exc:
        raise RuntimeFailure(
            f"could not read {config_path} after CONFIG REWRITE: {exc.strerror or exc}",
            fields={"config_path": str(config_path)},
        ) from None
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if ["appendonly", "yes"] not in lines:
        raise RuntimeFailure(
            f"{config_path} does not say 'appendonly yes' after CONFIG REWRITE: is it the "
            f"file the server at {client.where} was started with?",
            fields={"config_path": str(config_path)},
        )
    password = client.password
    tokens = {token.strip('"') for line in lines for token in line}
    clear = any(line[0].lower() == "requirepass" for line in lines) or (
        password is not None and (password in tokens or f">{password}" in text)
    )
    if clear:
        raise RuntimeFailure(
            f"{config_path} holds a password in clear after CONFIG REWRITE (was requirepass "
            "set, or an ACL rule with >password?): remove it and write the config again",
            fields={"config_path": str(config_path)},
        )
