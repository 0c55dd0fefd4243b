"""pgBackRest driver, without PostgreSQL: the rendered pgbackrest.conf (golden texts below;
review a diff to them like a config change), the archive/restore commands, the secret
environment, the parsers of ``info``/``verify`` output (real 2.45 output), the restore target
checks, and how commands run (a fake ``pgbackrest`` script: clean environment, errors,
secrets scrubbed, timeouts)."""

from __future__ import annotations

import datetime as dt
import json
import stat
import textwrap
from pathlib import Path

import psutil
import pytest

from shipyard.drivers.pgbackrest import (
    PgBackRest,
    RestoreTarget,
    S3Repo,
    StanzaConfig,
    archive_command,
    dropped_wal,
    render_config,
    restore_command,
    secret_env,
)
from shipyard.drivers.pgbackrest.engine import parse_info, parse_verify
from shipyard.errors import RuntimeFailure
from tests.support.harness import wait_for

BASE = StanzaConfig(
    stanza="db-main",
    pg_path=Path("/var/lib/shipyard/pg/db-main/data"),
    pg_port=5433,
    pg_socket_dir=Path("/run/shipyard/pg-db-main"),
    repo_path=Path("/var/lib/shipyard/backups/db-main"),
    log_path=Path("/var/log/shipyard/pgbackrest"),
    lock_path=Path("/run/shipyard/pgbackrest-lock"),
    spool_path=Path("/var/spool/shipyard/pgbackrest"),
)

GOLDEN_LOCAL = """\
# pgBackRest configuration of stanza 'db-main', written by Shipyard.
# No secrets here: cipher passphrases and S3 keys come from the environment
# (PGBACKREST_REPO1_CIPHER_PASS, PGBACKREST_REPO2_CIPHER_PASS, PGBACKREST_REPO2_S3_KEY, PGBACKREST_REPO2_S3_KEY_SECRET).
[global]
lock-path=/run/shipyard/pgbackrest-lock
log-path=/var/log/shipyard/pgbackrest
log-level-console=warn
log-level-stderr=warn
log-level-file=info
spool-path=/var/spool/shipyard/pgbackrest
archive-async=n
archive-push-queue-max=1GiB
start-fast=y
process-max=1
compress-type=zst

repo1-type=posix
repo1-path=/var/lib/shipyard/backups/db-main
repo1-cipher-type=aes-256-cbc
repo1-retention-full-type=count
repo1-retention-full=2

[db-main]
pg1-path=/var/lib/shipyard/pg/db-main/data
pg1-port=5433
pg1-socket-path=/run/shipyard/pg-db-main
pg1-user=postgres
"""  # noqa: E501

GOLDEN_S3 = """\
# pgBackRest configuration of stanza 'db-main', written by Shipyard.
# No secrets here: cipher passphrases and S3 keys come from the environment
# (PGBACKREST_REPO1_CIPHER_PASS, PGBACKREST_REPO2_CIPHER_PASS, PGBACKREST_REPO2_S3_KEY, PGBACKREST_REPO2_S3_KEY_SECRET).
[global]
lock-path=/run/shipyard/pgbackrest-lock
log-path=/var/log/shipyard/pgbackrest
log-level-console=warn
log-level-stderr=warn
log-level-file=info
spool-path=/var/spool/shipyard/pgbackrest
archive-async=y
archive-push-queue-max=256MiB
start-fast=y
process-max=2
compress-type=lz4

repo1-type=posix
repo1-path=/var/lib/shipyard/backups/db-main
repo1-cipher-type=aes-256-cbc
repo1-retention-full-type=time
repo1-retention-full=30

repo2-type=s3
repo2-path=/shipyard/db-main
repo2-s3-bucket=backups.example
repo2-s3-endpoint=s3.example.com
repo2-storage-port=9443
repo2-s3-region=eu-west-3
repo2-s3-uri-style=path
repo2-storage-verify-tls=y
repo2-storage-ca-file=/etc/shipyard/s3-ca.pem
repo2-cipher-type=aes-256-cbc
repo2-retention-full-type=time
repo2-retention-full=30

[db-main]
pg1-path=/var/lib/shipyard/pg/db-main/data
pg1-port=5433
pg1-socket-path=/run/shipyard/pg-db-main
pg1-user=postgres
"""  # noqa: E501

S3 = S3Repo(
    endpoint="s3.example.com:9443",
    bucket="backups.example",
    region="eu-west-3",
    path="/shipyard/db-main",
    ca_file=Path("/etc/shipyard/s3-ca.pem"),
)


def with_s3() -> StanzaConfig:
    return StanzaConfig(
        **{
            **BASE.__dict__,
            "s3": S3,
            "retention_full": 30,
            "retention_full_type": "time",
            "archive_push_queue_max": "256MiB",
            "archive_async": True,
            "process_max": 2,
            "compress_type": "lz4",
        }
    )


# --- rendering --------------------------------------------------------------------------------


def test_local_repository_config() -> None:
    assert render_config(BASE) == GOLDEN_LOCAL
    assert BASE.repos == (1,)


def test_s3_repository_with_time_retention() -> None:
    cfg = with_s3()
    assert render_config(cfg) == GOLDEN_S3
    assert cfg.repos == (1, 2)


def test_s3_defaults_port_443_and_no_ca_file() -> None:
    text = render_config(
        StanzaConfig(**{**BASE.__dict__, "s3": S3Repo(endpoint="minio.lan", bucket="pg-bk")})
    )
    assert "repo2-s3-endpoint=minio.lan\nrepo2-storage-port=443\n" in text
    assert "repo2-path=/pgbackrest\n" in text
    assert "ca-file" not in text


def test_tls_verification_can_be_switched_off() -> None:
    s3 = S3Repo(endpoint="10.0.0.5:9000", bucket="pg-bk", verify_tls=False)
    text = render_config(StanzaConfig(**{**BASE.__dict__, "s3": s3}))
    assert "repo2-storage-verify-tls=n\n" in text


def test_no_queue_limit_renders_no_option() -> None:
    cfg = StanzaConfig(**{**BASE.__dict__, "archive_push_queue_max": None})
    assert "archive-push-queue-max" not in render_config(cfg)


def test_config_never_contains_secrets() -> None:
    env = secret_env("cipher-pass-123", "AKIAEXAMPLE", "s3-secret-456")
    text = render_config(with_s3())
    for value in env.values():
        assert value not in text
    assert "cipher-pass=" not in text and "s3-key" not in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stanza", "bad name"),
        ("stanza", "x\n[global]"),
        ("stanza", ""),
        ("pg_path", Path("relative/data")),
        ("repo_path", Path("/srv/repo\nrepo1-path=/tmp")),
        ("pg_port", 0),
        ("pg_user", "postgres\nx"),
        ("retention_full", 0),
        ("archive_push_queue_max", "lots"),
        ("process_max", 0),
    ],
)
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        StanzaConfig(**{**BASE.__dict__, field: value})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": "https://s3.example.com", "bucket": "pg-bk"}, "endpoint"),
        ({"endpoint": "s3:99999", "bucket": "pg-bk"}, "endpoint"),
        ({"endpoint": "s3", "bucket": "Bad_Bucket"}, "bucket"),
        ({"endpoint": "s3", "bucket": "pg-bk", "path": "rel"}, "path"),
        ({"endpoint": "s3", "bucket": "pg-bk", "region": "eu west"}, "region"),
    ],
)
def test_invalid_s3_repo_is_refused(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3Repo(**kwargs)  # type: ignore[arg-type]


# --- commands and secrets ------------------------------------------------------------------


def test_archive_and_restore_commands() -> None:
    conf = Path("/etc/shipyard/pg/db-main.conf")
    assert archive_command(conf, "db-main") == (
        "pgbackrest --config=/etc/shipyard/pg/db-main.conf --stanza=db-main archive-push %p"
    )
    assert restore_command(conf, "db-main") == (
        'pgbackrest --config=/etc/shipyard/pg/db-main.conf --stanza=db-main archive-get %f "%p"'
    )


def test_archive_command_quotes_paths_and_refuses_placeholders() -> None:
    cmd = archive_command(Path("/srv/my backups/pg.conf"), "main")
    assert cmd == "pgbackrest --config='/srv/my backups/pg.conf' --stanza=main archive-push %p"
    for bad in ("/srv/100%/pg.conf", "/srv/it's/pg.conf"):
        with pytest.raises(ValueError):
            archive_command(Path(bad), "main")
    with pytest.raises(ValueError):
        archive_command(Path("/srv/pg.conf"), "main; rm -rf /")


def test_secret_env() -> None:
    assert secret_env("pw") == {"PGBACKREST_REPO1_CIPHER_PASS": "pw"}
    assert secret_env("pw", "key", "secret", repo2_cipher_pass="pw2") == {
        "PGBACKREST_REPO1_CIPHER_PASS": "pw",
        "PGBACKREST_REPO2_CIPHER_PASS": "pw2",
        "PGBACKREST_REPO2_S3_KEY": "key",
        "PGBACKREST_REPO2_S3_KEY_SECRET": "secret",
    }
    assert secret_env("pw", "key", "secret")["PGBACKREST_REPO2_CIPHER_PASS"] == "pw"
    with pytest.raises(ValueError):
        secret_env("")
    with pytest.raises(ValueError):
        secret_env("pw", "key", None)


# --- parsing ----------------------------------------------------------------------------------


def wal(n: int) -> str:
    return f"0000000100000000000000{n:02X}"


INFO_JSON = [
    {
        "archive": [
            {
                "database": {"id": 1, "repo-key": 1},
                "id": "15-1",
                "max": wal(8),
                "min": wal(6),
            },
            {"database": {"id": 1, "repo-key": 2}, "id": "15-1", "max": None, "min": None},
        ],
        "backup": [
            {
                "archive": {"start": wal(9), "stop": wal(10)},
                "backrest": {"format": 5, "version": "2.45"},
                "database": {"id": 1, "repo-key": 1},
                "error": False,
                "info": {"delta": 1000, "repository": {"delta": 300}, "size": 23001000},
                "label": "20261202-123805F_20261202-124000D",
                "lsn": {"start": "0/900028", "stop": "0/A00050"},
                "prior": "20261202-123805F",
                "reference": ["20261202-123805F"],
                "timestamp": {"start": 1796215200, "stop": 1796215201},
                "type": "diff",
            },
            {
                "archive": {"start": wal(7), "stop": wal(8)},
                "backrest": {"format": 5, "version": "2.45"},
                "database": {"id": 1, "repo-key": 1},
                "error": False,
                "info": {
                    "delta": 22992385,
                    "repository": {"delta": 3068240, "size": 3068240},
                    "size": 22992385,
                },
                "label": "20261202-123805F",
                "lsn": {"start": "0/700028", "stop": "0/800050"},
                "prior": None,
                "reference": None,
                "timestamp": {"start": 1796215085, "stop": 1796215087},
                "type": "full",
            },
        ],
        "cipher": "aes-256-cbc",
        "db": [{"id": 1, "repo-key": 1, "system-id": 7714685034449431508, "version": "15"}],
        "name": "main",
        "repo": [
            {"cipher": "aes-256-cbc", "key": 1, "status": {"code": 0, "message": "ok"}},
            {"cipher": "aes-256-cbc", "key": 2, "status": {"code": 2, "message": "no valid"}},
        ],
        "status": {"code": 4, "lock": {"backup": {"held": False}}, "message": "mixed"},
    },
    {"name": "other", "status": {"code": 0, "message": "ok"}},
]


def test_parse_info() -> None:
    info = parse_info(json.dumps(INFO_JSON), "main")
    assert (info.name, info.status_code, info.ok, info.cipher) == ("main", 4, False, "aes-256-cbc")
    assert [(r.repo, r.ok, r.message) for r in info.repos] == [
        (1, True, "ok"),
        (2, False, "no valid"),
    ]
    full, diff = info.backups  # oldest first, whatever order pgBackRest listed them in
    assert (full.label, full.kind, full.repo, full.prior) == ("20261202-123805F", "full", 1, None)
    assert full.start == dt.datetime(2026, 12, 2, 12, 38, 5, tzinfo=dt.UTC)
    assert full.stop == dt.datetime(2026, 12, 2, 12, 38, 7, tzinfo=dt.UTC)
    assert (full.database_size, full.repo_size, full.repo_delta) == (22992385, 3068240, 3068240)
    assert (full.wal_start, full.wal_stop) == (
        "000000010000000000000007",
        "000000010000000000000008",
    )
    assert (diff.kind, diff.prior, diff.repo_size, diff.repo_delta) == (
        "diff",
        "20261202-123805F",
        None,
        300,
    )
    assert [(a.repo, a.min_wal, a.max_wal) for a in info.archives] == [
        (1, "000000010000000000000006", "000000010000000000000008"),
        (2, None, None),
    ]
    assert info.backups_in(2) == ()
    assert info.earliest_restorable() == full.stop + dt.timedelta(seconds=1)
    assert info.earliest_restorable(2) is None


def test_parse_info_of_a_missing_stanza_fails_clearly() -> None:
    with pytest.raises(RuntimeFailure, match="stanza 'nope'"):
        parse_info(json.dumps(INFO_JSON), "nope")
    with pytest.raises(RuntimeFailure, match="unexpected pgbackrest info output"):
        parse_info("not json", "main")


VERIFY_OK = """\
stanza: main
status: ok
  archiveId: 15-1, total WAL checked: 3, total valid WAL: 3
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261202-123805F, status: valid, total files checked: 964, total valid files: 964
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
"""

VERIFY_CORRUPT = """\
stanza: main
status: error
  archiveId: 15-1, total WAL checked: 2, total valid WAL: 2
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261202-123805F, status: invalid, total files checked: 964, total valid files: 963
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
"""


def test_parse_verify_ok() -> None:
    result = parse_verify(VERIFY_OK)
    assert (result.stanza, result.status, result.ok, result.problems) == ("main", "ok", True, [])
    assert result.archives[0].archive_id == "15-1"
    assert result.archives[0].counts.checked == 3
    assert result.backups[0].label == "20261202-123805F"
    assert result.backups[0].counts.valid == 964


def test_parse_verify_corruption() -> None:
    result = parse_verify(VERIFY_CORRUPT)
    assert not result.ok
    assert result.backups[0].status == "invalid"
    assert result.backups[0].counts.checksum_invalid == 1
    assert result.problems == [
        "stanza status: error",
        "backup 20261202-123805F invalid: 963/964 valid, missing 0, checksum invalid 1, "
        "size invalid 0, other 0",
    ]


def test_parse_verify_non_verbose_counts_line() -> None:
    text = (
        "stanza: main\nstatus: error\n"
        "  backup: 20261202-123805F, status: invalid, total files checked: 964, "
        "total valid files: 963\n    checksum invalid: 1\n"
    )
    result = parse_verify(text)
    assert result.backups[0].counts.checksum_invalid == 1 and not result.ok


def test_parse_verify_garbage_fails() -> None:
    with pytest.raises(RuntimeFailure, match="unexpected pgbackrest verify output"):
        parse_verify("P00 ERROR: something else\n")


def test_dropped_wal_lines_of_the_server_log() -> None:
    log = textwrap.dedent("""\
        WARN: dropped WAL file '00000001000000000000000D' because archive queue exceeded 4MB
        2026-12-02 12:38:42.654 UTC [7141] LOG:  archive command failed with exit code 104
        WARN: dropped WAL file '00000001000000000000000E' because archive queue exceeded 4MB
    """)
    assert dropped_wal(log) == ["00000001000000000000000D", "00000001000000000000000E"]
    assert dropped_wal("") == []


def test_restore_targets() -> None:
    assert RestoreTarget.latest().kind == "latest"
    assert RestoreTarget.backup("20261202-123805F").label == "20261202-123805F"
    assert RestoreTarget.backup("20261202-123805F_20261202-124000I").kind == "backup"
    with pytest.raises(ValueError):
        RestoreTarget.backup("--delta")
    with pytest.raises(ValueError, match="timezone"):
        RestoreTarget.at(dt.datetime(2026, 1, 1, 12, 0))


# --- running (fake pgbackrest) ------------------------------------------------------------


def fake_pgbackrest(tmp_path: Path, body: str) -> str:
    script = tmp_path / "pgbackrest"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


SECRETS = secret_env("cipher-passphrase-xyz", "AKEXAMPLEKEY", "s3-very-secret")


def engine(binary: str, timeout_s: float = 30) -> PgBackRest:
    return PgBackRest(
        Path("/etc/pgbackrest/main.conf"),
        "main",
        run_as=None,
        env=SECRETS,
        binary=binary,
        timeout_s=timeout_s,
    )


def test_runs_with_a_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_SECRET_OF_OURS", "do-not-leak")
    binary = fake_pgbackrest(tmp_path, 'env | sort; echo "ARGS: $*"; pwd\n')
    done = engine(binary).run("check", "--archive-timeout=5")
    names = {line.split("=", 1)[0] for line in done.stdout.splitlines() if "=" in line}
    names -= {"PWD", "SHLVL", "_", "ARGS: --config"}  # set by the shell itself
    assert names == {"PATH", "LANG", *SECRETS}
    assert "LANG=C.UTF-8" in done.stdout
    assert "ARGS: --config=/etc/pgbackrest/main.conf --stanza=main --archive-timeout=5 check" in (
        done.stdout
    )
    assert done.stdout.rstrip().endswith("\n/")  # runs in /


def test_failure_carries_pgbackrest_error_without_secrets(tmp_path: Path) -> None:
    binary = fake_pgbackrest(
        tmp_path,
        """\
        echo "WARN: something odd" >&2
        echo "ERROR: [037]: backup command requires option: repo1-cipher-pass" >&2
        echo "       HINT: passphrase was '$PGBACKREST_REPO1_CIPHER_PASS' $PGBACKREST_REPO2_S3_KEY_SECRET" >&2
        echo "unrelated trailing line" >&2
        exit 37
        """,  # noqa: E501
    )
    with pytest.raises(RuntimeFailure) as caught:
        engine(binary).backup("full")
    err = caught.value
    assert err.message.startswith("pgbackrest backup of stanza 'main' failed (exit 37): ")
    assert "ERROR: [037]: backup command requires option: repo1-cipher-pass HINT:" in err.message
    assert err.fields["error_code"] == 37 and err.fields["exit_code"] == 37
    assert "unrelated" not in err.message
    text = err.message + json.dumps(err.to_dict())
    for value in SECRETS.values():
        assert value not in text
    assert "<redacted>" in err.message


def test_failure_without_error_line_quotes_the_tail(tmp_path: Path) -> None:
    binary = fake_pgbackrest(tmp_path, 'echo "segfault-ish noise" >&2; exit 1\n')
    with pytest.raises(RuntimeFailure, match=r"exit 1.*segfault-ish noise") as caught:
        engine(binary).expire()
    assert caught.value.fields["error_code"] is None


def test_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    binary = fake_pgbackrest(tmp_path, f"sleep 60 & echo $! > {pidfile}; wait\n")
    with pytest.raises(RuntimeFailure, match=r"did not finish within 0\.5 s"):
        engine(binary, timeout_s=0.5).run("backup")
    child = int(pidfile.read_text())
    assert wait_for(lambda: gone(child), timeout=5)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="cannot run pgbackrest info"):
        engine(str(tmp_path / "nope")).info()


def test_restore_refuses_non_empty_target_and_unknown_label(tmp_path: Path) -> None:
    binary = fake_pgbackrest(tmp_path, f"echo '{json.dumps(INFO_JSON)}'\n")
    target = tmp_path / "restored"
    target.mkdir()
    (target / "PG_VERSION").write_text("15\n")
    with pytest.raises(RuntimeFailure, match="not empty"):
        engine(binary).restore(target, RestoreTarget.latest())
    with pytest.raises(RuntimeFailure, match=r"no backup '20200101-000000F'.*20261202-123805F"):
        engine(binary).restore(tmp_path / "new", RestoreTarget.backup("20200101-000000F"))
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeFailure, match="no backup of stanza 'main' in repo2"):
        engine(binary).restore(tmp_path / "new", RestoreTarget.latest(), repo=2)


def test_restore_to_a_time_before_the_first_backup_names_the_earliest(tmp_path: Path) -> None:
    binary = fake_pgbackrest(tmp_path, f"echo '{json.dumps(INFO_JSON)}'\n")
    before = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    with pytest.raises(RuntimeFailure) as caught:
        engine(binary).restore(tmp_path / "new", RestoreTarget.at(before))
    assert "earliest time that can be restored from any repository is 2026-12-02 12:38:08" in (
        caught.value.message
    )
    assert caught.value.fields["earliest"] == "2026-12-02T12:38:08+00:00"
    assert not (tmp_path / "new").exists()


def test_restore_to_a_future_time_is_refused(tmp_path: Path) -> None:
    binary = fake_pgbackrest(tmp_path, f"echo '{json.dumps(INFO_JSON)}'\n")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(RuntimeFailure, match="in the future"):
        engine(binary).restore(tmp_path / "new", RestoreTarget.at(later))
    assert not (tmp_path / "new").exists()
