"""The pgBackRest driver against real PostgreSQL 15, pgBackRest 2.45 and SeaweedFS (S3).

One module-wide primary cluster (``initdb --wal-segsize=1``: 1 MiB WAL segments keep the
archive small and let a 4 MiB ``archive-push-queue-max`` be exceeded in seconds) archives to
two encrypted repositories: repo1 a local directory, repo2 a bucket on a SeaweedFS store over
HTTPS with its own CA. The tests run in file order and build on each other (the backups of
one are the restore points of the next); the last one deletes repo1.

Everything runs as the ``postgres`` account when the tests run as root (PostgreSQL and
pgBackRest refuse root). The workspace is a directory of our own under /tmp (pytest's are 0700
root-owned: the account could not traverse them) and sockets live in short /tmp/pgsock-*
directories (unix socket paths are limited to 107 bytes). Every server started is stopped in
the fixtures' teardown, also when a test fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipyard.drivers.local.users import Account, give, popen_kwargs, service_account
from shipyard.drivers.pgbackrest import (
    PgBackRest,
    RestoreTarget,
    S3Repo,
    StanzaConfig,
    archive_command,
    dropped_wal,
    render_config,
    secret_env,
)
from shipyard.errors import RuntimeFailure
from tests.support.harness import free_port, wait_for
from tests.support.s3store import S3Store, running_s3

pytestmark = pytest.mark.integration

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STANZA = "main"
BUCKET = "pg-backups"
CIPHER_PASS = "correct-horse-battery-staple-7"
QUEUE_MAX_MIB = 4
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Cluster:
    """A PostgreSQL data directory and the server on it (run as ``acct``)."""

    data: Path
    port: int
    sock: Path
    log: Path
    acct: Account
    env: dict[str, str]
    running: bool = False

    def _run(self, argv: list[str], timeout: float = 60) -> str:
        proc = subprocess.run(
            argv, env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **self.env}, cwd="/",
            capture_output=True, text=True, timeout=timeout, check=False,
            **popen_kwargs(self.acct.name),
        )  # fmt: skip
        assert proc.returncode == 0, f"{argv[0]} failed: {proc.stdout}{proc.stderr}"
        return str(proc.stdout)

    def write_conf(self, archive: str) -> None:
        """Our settings, included at the end of postgresql.conf (a restored copy gets its own
        port and socket directory by rewriting this file)."""
        (self.data / "shipyard.conf").write_text(
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.sock}'\n"
            "wal_level = replica\n"
            "archive_mode = on\n"
            "archive_timeout = 60\n"
            f"archive_command = '{archive}'\n"
            "fsync = off\n"  # a test cluster: speed over durability
            "shared_buffers = 16MB\n"
            "max_wal_senders = 2\n"
        )
        main = self.data / "postgresql.conf"
        if "include 'shipyard.conf'" not in main.read_text():
            with main.open("a") as f:
                f.write("\ninclude 'shipyard.conf'\n")
        give_file(self.data / "shipyard.conf", self.acct)

    def start(self) -> None:
        self.running = True  # even if pg_ctl fails or times out: stop() must still try
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", "60", "start"])  # fmt: skip

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                           "-w", "stop"])  # fmt: skip
            self.running = False

    def sql(self, query: str) -> str:
        out = self._run([
            str(PG_BIN / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.sock), "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-c", query,
        ])  # fmt: skip
        return out.strip()

    def rows(self, table: str = "t") -> list[str]:
        return self.sql(f"select v from {table} order by id").splitlines()

    def switch_and_wait_archived(self, timeout: float = 30) -> str:
        """Close the current WAL segment and wait until PostgreSQL has archived it."""
        segment = self.sql("select pg_walfile_name(pg_switch_wal())")
        wait_for(lambda: self.sql("select last_archived_wal from pg_stat_archiver") >= segment,
                 timeout=timeout)  # fmt: skip
        return segment

    def wait_promoted(self, timeout: float = 60) -> None:
        """pg_ctl -w returns once a restored server accepts connections, before recovery
        (replay to the target, then promotion) has ended."""
        wait_for(lambda: self.sql("select pg_is_in_recovery()") == "f", timeout=timeout)


@dataclass
class Env:
    work: Path
    acct: Account
    cfg: StanzaConfig
    config_path: Path
    secrets: dict[str, str]
    bk: PgBackRest
    primary: Cluster
    store: S3Store
    clusters: list[Cluster] = field(default_factory=list)
    sockdirs: list[Path] = field(default_factory=list)
    marks: dict[str, object] = field(default_factory=dict)

    def sockdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="pgsock-", dir="/tmp"))
        self.sockdirs.append(path)
        give(path, self.acct, 0o700)
        return path

    def restored(self, name: str) -> Cluster:
        """A cluster object for a restore target (directory not created: restore does)."""
        cluster = Cluster(
            data=self.work / "restores" / name,
            port=free_port(),
            sock=self.sockdir(),
            log=self.work / "logs" / f"{name}.log",
            acct=self.acct,
            env=self.secrets,
        )
        self.clusters.append(cluster)
        return cluster

    def start_restored(self, cluster: Cluster) -> None:
        cluster.write_conf(archive_command(self.config_path, STANZA))
        cluster.start()
        cluster.wait_promoted()


def give_file(path: Path, acct: Account, mode: int = 0o600) -> None:
    if os.geteuid() == 0:
        os.chown(path, acct.uid, acct.gid)
    path.chmod(mode)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if not (PG_BIN / "initdb").exists() or shutil.which("pgbackrest") is None:
        pytest.fail("PostgreSQL 15 and pgBackRest are needed (scripts/install-system.sh)")
    acct = service_account("postgres")
    work = Path(tempfile.mkdtemp(prefix="sy-pgbr-", dir="/tmp"))
    work.chmod(0o711)
    env_: Env | None = None
    try:
        with running_s3(work / "s3") as store:
            store.make_bucket(BUCKET)
            env_ = _make_env(work, acct, store)
            _start_primary(env_)
            yield env_
    finally:
        if env_ is not None:
            for cluster in reversed(env_.clusters):
                cluster.stop()
            for path in env_.sockdirs:
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _make_env(work: Path, acct: Account, store: S3Store) -> Env:
    for name in ("repo", "logs", "pgbackrest-log", "lock", "spool", "restores"):
        give(work / name, acct, 0o700)
    (work / "s3").chmod(0o711)  # the CA file inside is read by pgBackRest as the account
    (work / "s3" / "tls").chmod(0o711)
    secrets = secret_env(CIPHER_PASS, store.access_key, store.secret_key)
    sock = Path(tempfile.mkdtemp(prefix="pgsock-", dir="/tmp"))
    give(sock, acct, 0o700)
    primary = Cluster(work / "data", free_port(), sock, work / "logs" / "primary.log", acct,
                      secrets)  # fmt: skip
    cfg = StanzaConfig(
        stanza=STANZA,
        pg_path=primary.data,
        pg_port=primary.port,
        pg_socket_dir=sock,
        repo_path=work / "repo",
        log_path=work / "pgbackrest-log",
        lock_path=work / "lock",
        spool_path=work / "spool",
        retention_full=30,
        retention_full_type="time",
        archive_push_queue_max=f"{QUEUE_MAX_MIB}MiB",
        s3=S3Repo(
            endpoint=store.host_port,
            bucket=BUCKET,
            region=store.region,
            path="/shipyard/main",
            ca_file=store.ca_file,
        ),
    )
    config_path = work / "pgbackrest.conf"
    config_path.write_text(render_config(cfg))
    give_file(config_path, acct)
    bk = PgBackRest(config_path, STANZA, run_as=acct.name, env=secrets, timeout_s=120)
    return Env(work, acct, cfg, config_path, secrets, bk, primary, store, sockdirs=[sock])


def _start_primary(env_: Env) -> None:
    primary = env_.primary
    give(primary.data, env_.acct, 0o700)
    primary._run([str(PG_BIN / "initdb"), "-D", str(primary.data), "-U", "postgres",
                  "--auth-local=peer", "--auth-host=scram-sha-256", "--wal-segsize=1", "-N"],
                 timeout=120)  # fmt: skip
    primary.write_conf(archive_command(env_.config_path, STANZA))
    env_.clusters.append(primary)
    primary.start()
    primary.sql("create table t (id serial primary key, v text not null)")


# --- the tests, in order ----------------------------------------------------------------------


def test_stanza_create_and_check(env: Env) -> None:
    env.bk.stanza_create()
    env.bk.stanza_create()  # idempotent
    env.bk.check(archive_timeout_s=30)
    info = env.bk.info()
    assert info.status_code == 2, info  # "no valid backups" yet
    assert [(r.repo, r.cipher) for r in info.repos] == [(1, "aes-256-cbc"), (2, "aes-256-cbc")]


def test_full_backup_then_point_in_time_restore(env: Env) -> None:
    full = env.bk.backup("full")
    assert (full.kind, full.repo) == ("full", 1)
    env.marks["full"] = full.label
    # A target must be strictly after the backup's stop second (see earliest_restorable).
    wait_for(lambda: dt.datetime.now(dt.UTC) >= full.stop + dt.timedelta(seconds=1.2), 5)
    env.primary.sql("insert into t (v) values ('A1'), ('A2')")
    t = dt.datetime.fromisoformat(env.primary.sql("select to_json(clock_timestamp())#>>'{}'"))
    env.primary.sql("insert into t (v) values ('B1')")
    env.primary.switch_and_wait_archived()

    at_t = env.restored("at-t")
    result = env.bk.restore(at_t.data, RestoreTarget.at(t))
    assert (result.label, result.repo) == (full.label, 1)
    auto = (at_t.data / "postgresql.auto.conf").read_text()
    assert "archive_mode = 'off'" in auto and "recovery_target_action = 'promote'" in auto
    assert at_t.data.stat().st_uid == env.acct.uid and (at_t.data.stat().st_mode & 0o777) == 0o700
    env.start_restored(at_t)
    assert at_t.rows() == ["A1", "A2"]
    at_t.stop()

    latest = env.restored("latest")
    env.bk.restore(latest.data, RestoreTarget.latest())
    env.start_restored(latest)
    assert latest.rows() == ["A1", "A2", "B1"]
    latest.stop()


def test_restore_target_before_first_backup_fails_before_writing(env: Env) -> None:
    target = env.work / "restores" / "too-early"
    early = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with pytest.raises(RuntimeFailure, match="earliest time that can be restored") as caught:
        env.bk.restore(target, RestoreTarget.at(early))
    assert not target.exists()
    earliest = dt.datetime.fromisoformat(caught.value.fields["earliest"])
    assert earliest == env.bk.info().earliest_restorable()
    with pytest.raises(RuntimeFailure, match="no backup '20000101-000000F'"):
        env.bk.restore(target, RestoreTarget.backup("20000101-000000F"))
    assert not target.exists()


def test_diff_backup_and_info(env: Env) -> None:
    env.primary.sql("insert into t (v) values ('C1')")
    diff = env.bk.backup("diff")
    assert (diff.kind, diff.prior) == ("diff", env.marks["full"])
    assert diff.label.startswith(f"{env.marks['full']}_") and diff.label.endswith("D")
    env.marks["diff"] = diff.label
    info = env.bk.info()
    assert info.status_code == 4, info  # "mixed": repo1 has backups, repo2 none yet
    assert [(r.repo, r.ok) for r in info.repos] == [(1, True), (2, False)]
    full_info, diff_info = info.backups_in(1)
    assert (full_info.label, diff_info.label) == (env.marks["full"], diff.label)
    for b in (full_info, diff_info):
        assert b.start <= b.stop <= dt.datetime.now(dt.UTC)
        assert b.database_size > 10_000_000  # an empty cluster is ~22 MB
        assert b.repo_size is not None and 0 < b.repo_size < b.database_size  # compressed
        assert b.wal_start is not None and b.wal_stop is not None
    assert full_info.database_delta == full_info.database_size
    assert diff_info.database_delta < full_info.database_size / 2
    assert diff_info.repo_delta is not None and diff_info.repo_delta < full_info.repo_size  # type: ignore[operator]
    archive1 = next(a for a in info.archives if a.repo == 1)
    assert archive1.archive_id == "15-1" and archive1.min_wal is not None
    assert archive1.max_wal is not None and archive1.max_wal >= diff_info.wal_stop  # type: ignore[operator]

    at_diff = env.restored("at-diff")
    result = env.bk.restore(at_diff.data, RestoreTarget.backup(diff.label))
    assert result.label == diff.label
    env.start_restored(at_diff)
    assert at_diff.rows() == ["A1", "A2", "B1", "C1"]
    at_diff.stop()


def test_repository_is_encrypted(env: Env) -> None:
    repo = env.cfg.repo_path
    for info_file in (repo / "backup" / STANZA / "backup.info", repo / "archive" / STANZA /
                      "archive.info"):  # fmt: skip
        raw = info_file.read_bytes()
        assert raw.startswith(b"Salted__"), info_file  # OpenSSL's encrypted-file header
        assert b"[db]" not in raw and b"db-version" not in raw
    manifest = repo / "backup" / STANZA / str(env.marks["full"]) / "backup.manifest"
    assert manifest.read_bytes().startswith(b"Salted__")
    assert b"pg_control" not in manifest.read_bytes()

    no_pass = {k: v for k, v in env.secrets.items() if k != "PGBACKREST_REPO1_CIPHER_PASS"}
    with pytest.raises(RuntimeFailure, match=r"ERROR: \[037\]: .*repo1-cipher-pass"):
        PgBackRest(env.config_path, STANZA, env.acct.name, no_pass).info()
    wrong = {**env.secrets, "PGBACKREST_REPO1_CIPHER_PASS": "not-the-passphrase"}
    info = PgBackRest(env.config_path, STANZA, env.acct.name, wrong).info(repo=1)
    assert not info.ok and "not-the-passphrase" not in info.status_message
    assert info.backups_in(1) == ()


def test_verify_reports_corruption_despite_exit_zero(env: Env) -> None:
    result = env.bk.verify(repo=1)
    assert result.ok, result.problems
    assert {b.label for b in result.backups} == {env.marks["full"], env.marks["diff"]}
    assert result.archives and all(a.counts.checked > 0 for a in result.archives)

    victim = max(
        (env.cfg.repo_path / "backup" / STANZA / str(env.marks["full"]) / "pg_data").rglob("*"),
        key=lambda p: p.stat().st_size if p.is_file() else -1,
    )
    original = victim.read_bytes()
    try:
        victim.write_bytes(original[:100] + bytes(b ^ 0xFF for b in original[100:120])
                           + original[120:])  # fmt: skip
        broken = env.bk.verify(repo=1)  # pgBackRest exits 0: the parse is the result
    finally:
        victim.write_bytes(original)
    assert not broken.ok
    assert broken.status == "error"
    bad = next(b for b in broken.backups if b.label == env.marks["full"])
    assert bad.status == "invalid" and bad.counts.checksum_invalid == 1
    assert any(str(env.marks["full"]) in p for p in broken.problems)
    assert env.bk.verify(repo=1).ok


def test_broken_archive_is_detected_and_wal_does_not_pile_up(env: Env) -> None:
    archive_dir = env.cfg.repo_path / "archive" / STANZA
    stats = "select failed_count, coalesce(last_failed_time::text, '') from pg_stat_archiver"
    failed_before = int(env.primary.sql(stats).split("|")[0])
    archive_dir.chmod(0o000)  # repo1 no longer takes WAL (repo2 still does)
    try:
        with pytest.raises(RuntimeFailure, match=r"ERROR: \[\d{3}\]: .*Permission denied") as c:
            env.bk.check(archive_timeout_s=5)
        assert c.value.fields["command"] == "check" and CIPHER_PASS not in c.value.message
        for i in range(QUEUE_MAX_MIB * 3):
            env.primary.sql(f"insert into t (v) values ('W{i}'); select pg_switch_wal()")
        # 12 segments of 1 MiB wait for a repository that refuses them; pgBackRest drops the
        # oldest until no more than the queue's 4 MiB wait: pg_wal never piles up.
        status = env.primary.data / "pg_wal" / "archive_status"
        wait_for(lambda: len(list(status.glob("*.ready"))) <= QUEUE_MAX_MIB + 1, timeout=60)
        dropped = dropped_wal(env.primary.log.read_text())
        assert len(dropped) >= QUEUE_MAX_MIB * 3 - QUEUE_MAX_MIB - 1, dropped
        assert "archive queue exceeded 4MB" in env.primary.log.read_text()
        # What the caller sees: PostgreSQL counts the failed pushes ...
        failed, last_failed = env.primary.sql(stats).split("|")
        assert int(failed) > failed_before and last_failed
        # ... and check() names the repository's error.
        with pytest.raises(RuntimeFailure, match="Permission denied"):
            env.bk.check(archive_timeout_s=5)
    finally:
        archive_dir.chmod(0o750)
    env.bk.check(archive_timeout_s=30)  # repaired: archiving works again


def test_s3_repo_alone_restores_after_repo1_is_deleted(env: Env) -> None:
    env.primary.sql("insert into t (v) values ('S3')")
    full2 = env.bk.backup("full", repo=2)
    assert (full2.repo, full2.kind) == (2, "full")
    objects = env.store.client().list(BUCKET, "shipyard/main/")
    assert any(o.key.endswith("backup.info") for o in objects)
    assert any("/archive/main/" in o.key for o in objects)
    env.primary.sql("insert into t (v) values ('S3-after')")
    env.primary.switch_and_wait_archived()
    assert env.bk.verify(repo=2).ok

    shutil.rmtree(env.cfg.repo_path)  # repo1 is gone for good
    only_s3 = env.restored("from-s3")
    result = env.bk.restore(only_s3.data, RestoreTarget.latest(), repo=2)
    assert (result.repo, result.label) == (2, full2.label)
    env.start_restored(only_s3)
    rows = only_s3.rows()
    assert rows[:4] == ["A1", "A2", "B1", "C1"]
    assert rows[-2:] == ["S3", "S3-after"]
    only_s3.stop()


def test_commands_time_out(env: Env) -> None:
    slow = PgBackRest(env.config_path, STANZA, env.acct.name, env.secrets, timeout_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(RuntimeFailure, match="did not finish within"):
        slow.verify(repo=2)
    assert time.monotonic() - t0 < 15
