"""Backups, point-in-time recovery, restore drills and off-site copies against a real daemon,
PostgreSQL 15, pgBackRest, Redis and SeaweedFS (S3 over HTTPS)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shipyard.client import Client
from shipyard.errors import NotFound
from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard
from tests.support.s3store import S3Store, running_s3


def sql(sy: Shipyard, name: str, query: str) -> str:
    return sy.ok("psql", name, "--", "-AtXqc", query).out.strip()


def superuser_sql(sy: Shipyard, name: str, query: str) -> str:
    """As the superuser over the unix socket (peer authentication maps root to it)."""
    sockets = [p for p in (sy.home / "data" / name / "run").glob(".s.PGSQL.*") if p.is_socket()]
    sockets += list(Path("/tmp").glob("shipyard-pg-*/.s.PGSQL.*"))
    socket = sockets[0]
    done = subprocess.run(
        ["psql", "-h", str(socket.parent), "-p", socket.name.rsplit(".", 1)[1], "-U", "postgres",
         "-d", "postgres", "-AtXqc", query],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def info(sy: Shipyard, name: str) -> Any:
    return json.loads(sy.ok("db", "info", name, "--json").out)


def backups(sy: Shipyard, name: str) -> Any:
    return json.loads(sy.ok("db", "backups", name, "--json").out)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def test_point_in_time_recovery_into_a_new_database_and_a_drill(
    own_shipyard: Shipyard, project: Project
) -> None:
    sy = own_shipyard
    bp = project.blueprint(
        """
databases:
  - name: ledger
    backups: {retentionDays: 14, pitrRetentionDays: 3}
""",
        name="shipyard.yaml",
    )
    deploy(sy, bp)
    first = backups(sy, "ledger")
    assert [b["kind"] for b in first["backups"]] == ["full"]  # taken when it was created
    assert first["runs"][0]["trigger"] == "created"
    described = info(sy, "ledger")
    assert described["backups"]["retention_days"] == 14
    assert described["backups"]["pitr_retention_days"] == 3
    sql(sy, "ledger", "CREATE TABLE entries (n int, note text)")
    sql(sy, "ledger", "INSERT INTO entries VALUES (1, 'before')")
    time.sleep(1.2)
    between = time.time()
    time.sleep(1.2)
    sql(sy, "ledger", "INSERT INTO entries VALUES (2, 'after')")
    taken = json.loads(sy.ok("db", "backup", "ledger", "--wait", "--json").out)
    assert taken["status"] == "succeeded" and taken["kind"] == "diff", taken

    # a restore to a time between the two inserts: the first row, not the second
    sy.ok("db", "restore", "ledger", "--to-time", iso(between), "--as", "ledger-then", "--wait")
    assert sql(sy, "ledger-then", "SELECT string_agg(note, ',') FROM entries") == "before"
    # the original is untouched, and the restored database is first-class
    assert sql(sy, "ledger", "SELECT count(*) FROM entries") == "2"
    listed = {d["name"]: d for d in json.loads(sy.ok("db", "list", "--json").out)}
    assert listed["ledger-then"]["status"] == "available"
    assert listed["ledger-then"]["port"] != listed["ledger"]["port"]
    assert [b["kind"] for b in backups(sy, "ledger-then")["backups"]] == ["full"]
    sql(sy, "ledger-then", "INSERT INTO entries VALUES (3, 'restored db is writable')")

    # --latest has both rows
    sy.ok("db", "restore", "ledger", "--latest", "--as", "ledger-now", "--wait")
    assert sql(sy, "ledger-now", "SELECT count(*) FROM entries") == "2"

    # bad input: clear errors, nothing created
    early = sy.cli("db", "restore", "ledger", "--to-time", "2001-01-01T00:00:00Z", "--as", "x")
    assert early.code == 2 and "before the earliest point" in early.err, early.text
    taken_name = sy.cli("db", "restore", "ledger", "--latest", "--as", "ledger-now")
    assert taken_name.code == 5 and "exists already" in taken_name.err, taken_name.text
    future = sy.cli("db", "restore", "ledger", "--to-time", iso(time.time() + 3600), "--as", "y")
    assert future.code == 2 and "in the future" in future.err
    unknown = sy.cli("db", "restore", "nope", "--latest", "--as", "z")
    assert unknown.code == 4, unknown.text
    names = {d["name"] for d in json.loads(sy.ok("db", "list", "--json").out)}
    assert names == {"ledger", "ledger-then", "ledger-now"}

    # a drill restores the latest backup plus WAL and reads the heartbeat back
    result = json.loads(sy.ok("db", "drill", "ledger", "--wait", "--json", timeout=300).out)
    assert result["ok"] is True, result
    assert 0 <= result["recovery_point_seconds"] < 130
    assert result["restore_seconds"] > 0
    assert info(sy, "ledger")["last_drill"]["ok"] is True
    assert not list((sy.home / "data" / ".drills").glob("*"))  # the throwaway is gone

    # delete keeps the backups, and frees the name
    gone = json.loads(sy.ok("db", "delete", "ledger-now", "--yes", "--json").out)
    assert gone["status"] == "deleted" and gone["datastore"].startswith("ledger-now (deleted ")
    assert backups(sy, gone["datastore"])["backups"]  # still listed, still restorable
    refused = sy.cli("db", "delete", "ledger")
    assert refused.code == 2 and "--yes" in refused.err


def test_a_broken_archive_is_detected_and_shown(own_shipyard: Shipyard, project: Project) -> None:
    sy = own_shipyard
    deploy(sy, project.blueprint("databases:\n  - name: fragile\n", name="shipyard.yaml"))
    archive = next((sy.home / "backups" / "postgres" / "fragile" / "archive").iterdir())
    archive.chmod(0o000)
    try:
        for _ in range(3):
            superuser_sql(sy, "fragile", "SELECT pg_switch_wal() FROM pg_create_restore_point('x')")
            time.sleep(1.5)
        archiver = info(sy, "fragile")["details"]["archiver"]
        assert archiver["failed_count"] > 0, archiver
        shown = sy.ok("db", "info", "fragile").out
        assert "FAILING since" in shown, shown
    finally:
        archive.chmod(0o750)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Store]:
    with running_s3(tmp_path / "s3") as store:
        store.make_bucket("offsite")
        yield store


def test_off_site_backups_restore_with_the_local_repository_gone(
    tmp_path: Path, project: Project, s3: S3Store, haproxy_bin: str
) -> None:
    sy = Shipyard(tmp_path / "home", extra_env={
        "SHIPYARD_S3_ENDPOINT": f"https://{s3.host_port}", "SHIPYARD_S3_BUCKET": "offsite",
        "SHIPYARD_S3_REGION": s3.region, "SHIPYARD_S3_ACCESS_KEY_ID": s3.access_key,
        "SHIPYARD_S3_SECRET_ACCESS_KEY": s3.secret_key, "SHIPYARD_S3_CA_FILE": str(s3.ca_file),
    })  # fmt: skip
    sy.up()
    try:
        bp = project.blueprint(
            "services:\n  - {type: keyvalue, name: sessions, ipAllowList: []}\n"
            "databases:\n  - name: vault\n",
            name="shipyard.yaml",
        )
        deploy(sy, bp)
        sql(sy, "vault", "CREATE TABLE secrets_kept AS SELECT generate_series(1, 500) AS n")
        url = sy.ok("redis-cli", "sessions", "--", "--no-auth-warning", "SET", "user:1", "ann")
        assert url.out.strip() == "OK"
        pg = json.loads(sy.ok("db", "backup", "vault", "--wait", "--json").out)
        kv = json.loads(sy.ok("db", "backup", "sessions", "--wait", "--json").out)
        assert pg["status"] == kv["status"] == "succeeded"
        listed = backups(sy, "vault")["backups"]
        locations = {loc for b in listed for loc in b["locations"]}
        assert locations == {"local", "s3"}
        keys = [o.key for o in s3.client().list("offsite", "shipyard/")]
        assert any("/vault/" in k for k in keys) and any("/sessions/" in k for k in keys)
        # the machine's copies are lost: both restore from S3 alone
        shutil.rmtree(sy.home / "backups" / "postgres" / "vault")
        for sealed in (sy.home / "backups" / "keyvalue" / "sessions").glob("*.sealed"):
            sealed.unlink()
        sy.ok("db", "restore", "vault", "--latest", "--from", "s3", "--as", "vault-2", "--wait")
        assert sql(sy, "vault-2", "SELECT count(*) FROM secrets_kept") == "500"
        sy.ok("db", "restore", "sessions", "--latest", "--from", "s3", "--as", "sessions-2",
              "--wait")  # fmt: skip
        assert sy.ok("redis-cli", "sessions-2", "--", "--no-auth-warning", "GET",
                     "user:1").out.strip() == "ann"  # fmt: skip
    finally:
        sy.down()


def test_key_value_backup_and_restore_keep_every_key(
    own_shipyard: Shipyard, project: Project
) -> None:
    sy = own_shipyard
    bp = project.blueprint(
        "services:\n"
        "  - {type: keyvalue, name: queue, ipAllowList: [], maxmemoryPolicy: noeviction}\n",
        name="shipyard.yaml",
    )
    deploy(sy, bp)
    with sy.client() as c:
        password = c.datastore_client("queue", []).env["REDISCLI_AUTH"]
    conn = redis.Redis(port=int(str(info(sy, "queue")["port"])), password=password)
    conn.mset({f"job:{i}": f"payload-{i}" for i in range(2000)})
    conn.close()
    taken = json.loads(sy.ok("db", "backup", "queue", "--wait", "--json").out)
    assert taken["status"] == "succeeded"
    sy.ok("redis-cli", "queue", "--", "--no-auth-warning", "SET", "job:late", "x")
    sy.ok("db", "restore", "queue", "--latest", "--as", "queue-copy", "--wait")
    copy = sy.ok("redis-cli", "queue-copy", "--", "--no-auth-warning", "DBSIZE").out.strip()
    assert copy == "2000"  # the snapshot's keys, not the one written after it
    assert sy.ok("redis-cli", "queue-copy", "--", "--no-auth-warning", "GET",
                 "job:1999").out.strip() == "payload-1999"  # fmt: skip
    aof = sy.ok("redis-cli", "queue-copy", "--", "--no-auth-warning", "CONFIG", "GET",
                "appendonly").out.split()  # fmt: skip
    assert aof[-1] == "yes"  # the restored copy persists from now on
    sy.down()
    sy.up()
    again = sy.ok("redis-cli", "queue-copy", "--", "--no-auth-warning", "DBSIZE").out.strip()
    assert again == "2000"


def test_backup_before_deploy_runs_before_the_pre_deploy_command(
    shipyard: Shipyard, project: Project
) -> None:
    service = web("migrator", "v1", instances=1, extra_env="""\
      - key: DATABASE_URL
        fromDatabase: {name: guarded, property: connectionString}
""", extra="    backupBeforeDeploy: true\n    preDeployCommand: echo migrating\n")  # fmt: skip
    bp = project.blueprint(
        "services:\n" + service + "databases:\n  - name: guarded\n", name="shipyard.yaml"
    )
    deploy(shipyard, bp)
    runs = backups(shipyard, "guarded")["runs"]
    assert [r["trigger"] for r in runs] == ["pre-deploy", "created"], runs
    assert runs[0]["status"] == "succeeded"
    with shipyard.client() as c:
        op = max((d for d in [c.deploy_status(i) for i in range(1, 50)
                              if _exists(c, i)]), key=lambda o: o.id)  # fmt: skip
        events = [e.message for e in c.events(op.id).events]
    backed = next(i for i, m in enumerate(events) if "before the deploy" in m)
    migrating = next(i for i, m in enumerate(events) if "running preDeployCommand" in m)
    assert backed < migrating, events
    assert runs[0]["backup_ids"][0] in events[backed]


def _exists(c: Client, op_id: int) -> bool:
    try:
        c.deploy_status(op_id)
    except NotFound:
        return False
    return True
