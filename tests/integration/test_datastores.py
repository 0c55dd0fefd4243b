"""Managed PostgreSQL against a real daemon, real PostgreSQL 15 and psql: provisioned from a
Blueprint, connection details given to apps, re-adopted across daemon kills, stopped cleanly
by `down`."""

from __future__ import annotations

import json
import subprocess

import psutil

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, wait_for

DB_ENV = """\
      - key: DATABASE_URL
        fromDatabase: {name: appdb, property: connectionString}
      - key: DB_HOST
        fromDatabase: {name: appdb, property: host}
      - key: DB_PORT
        fromDatabase: {name: appdb, property: port}
      - key: DB_USER
        fromDatabase: {name: appdb, property: user}
      - key: DB_PASSWORD
        fromDatabase: {name: appdb, property: password}
      - key: DB_NAME
        fromDatabase: {name: appdb, property: database}
"""


def psql(url: str, query: str) -> str:
    done = subprocess.run(
        ["psql", url, "-AtXqc", query], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def try_psql(url: str, query: str) -> str | None:
    done = subprocess.run(
        ["psql", url, "-AtXqc", query], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def app_env(sy: Shipyard, service: str, key: str) -> str:
    status, body = sy.get(f"{service}.localhost", f"/env?key={key}")
    assert status == 200, body
    return body


def datastore(sy: Shipyard, name: str) -> dict[str, object]:
    return dict(json.loads(sy.ok("db", "info", name, "--json").out))


def test_a_database_is_provisioned_given_to_apps_and_outlives_the_daemon(
    own_shipyard: Shipyard, project: Project
) -> None:
    sy = own_shipyard
    bp = project.blueprint(
        "services:\n"
        + web("api", "v1", instances=1, extra_env=DB_ENV)
        + """
databases:
  - name: appdb
    databaseName: app
    user: app_owner
"""
    )
    plan = sy.ok("plan", "-f", str(bp)).out
    assert "+ appdb (database): create" in plan
    deploy(sy, bp)
    url = app_env(sy, "api", "DATABASE_URL")
    info = datastore(sy, "appdb")
    port = info["port"]
    assert url.startswith("postgresql://app_owner:") and url.endswith(f"@127.0.0.1:{port}/app")
    assert app_env(sy, "api", "DB_USER") == "app_owner"
    assert app_env(sy, "api", "DB_NAME") == "app"
    assert app_env(sy, "api", "DB_PORT") == str(port)
    password = app_env(sy, "api", "DB_PASSWORD")
    assert password and password not in json.dumps(info)  # masked in the API
    assert info["status"] == "available" and info["running"] and info["version"] == "15"
    # the app's connection string works: scram, over TCP, as the owner of its database
    psql(url, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
    psql(url, "INSERT INTO notes VALUES (1, 'kept')")
    assert psql(url, "SELECT current_user, current_database()") == "app_owner|app"
    assert psql(url, "SHOW password_encryption") == "scram-sha-256"
    # a wrong password is refused; the superuser cannot log in over TCP at all
    wrong = url.replace(password, "not-the-password")
    assert subprocess.run(["psql", wrong, "-c", "select 1"], capture_output=True,
                          check=False).returncode != 0  # fmt: skip
    # `shipyard psql` connects as the owner
    assert sy.ok("psql", "appdb", "--", "-AtXc", "SELECT body FROM notes").out.strip() == "kept"
    listed = json.loads(sy.ok("db", "list", "--json").out)
    assert [(d["name"], d["kind"], d["status"]) for d in listed] == [
        ("appdb", "postgres", "available")
    ]
    server = int(str(info["pid"]))
    assert psutil.Process(server).username() == "postgres"  # never root

    # kill -9 of the daemon: PostgreSQL keeps running and is re-adopted, not restarted
    sy.kill_daemon()
    assert psql(url, "SELECT count(*) FROM notes") == "1"
    sy.up()
    assert datastore(sy, "appdb")["pid"] == server
    assert psql(url, "SELECT body FROM notes") == "kept"

    # down stops it cleanly (fast shutdown); up starts it without crash recovery
    sy.down()
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == "zombie"
    sy.up()
    again = datastore(sy, "appdb")
    assert again["running"] and again["pid"] != server and again["port"] == port
    assert psql(url, "SELECT body FROM notes") == "kept"
    logs = sy.ok("db", "logs", "appdb", "-n", "200").out
    assert "database system was shut down at" in logs, logs
    assert "not properly shut down" not in logs and "automatic recovery" not in logs

    # a second deploy of the same Blueprint leaves the database alone (same server)
    deploy(sy, bp)
    assert datastore(sy, "appdb")["pid"] == again["pid"]


def test_bad_datastore_input_is_refused_and_changes_nothing(
    shipyard: Shipyard, project: Project
) -> None:
    unknown = project.blueprint(
        "services:\n" + web("lost", "v1", instances=1, extra_env=DB_ENV.replace("appdb", "nodb"))
    )
    result = shipyard.cli("deploy", "-f", str(unknown), "--wait")
    assert result.code == 2, result.text
    assert "reads database 'nodb', which is neither in this Blueprint nor in Shipyard" in (
        result.err
    )
    wrong_version = project.blueprint(
        "databases:\n  - name: olddb\n    postgresMajorVersion: 9\n", name="shipyard.yaml"
    )
    result = shipyard.cli("deploy", "-f", str(wrong_version), "--wait")
    assert result.code == 2, result.text
    assert "postgresMajorVersion 9 is not installed on this machine (installed: 15)" in result.err
    assert "apt-get install postgresql-9" in result.err
    extension = project.blueprint(
        "databases:\n  - name: extdb\n    backups: {retentionDays: 3}\n", name="render.yaml"
    )
    result = shipyard.cli("plan", "-f", str(extension))
    assert result.code == 3 and "backups: is a Shipyard extension" in result.err, result.text
    with shipyard.client() as c:
        assert c.datastores() == [] and all(s.name != "lost" for s in c.services())


def test_a_read_replica_streams_from_its_primary(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + web("reader", "v1", instances=1, extra_env="""\
      - key: DATABASE_URL
        fromDatabase: {name: main-db, property: connectionString}
      - key: READ_URL
        fromDatabase: {name: main-db-replica, property: connectionString}
""")
        + """
databases:
  - name: main-db
    readReplicas:
      - name: main-db-replica
"""
    )  # fmt: skip
    deploy(shipyard, bp)
    url, read_url = (app_env(shipyard, "reader", k) for k in ("DATABASE_URL", "READ_URL"))
    assert url != read_url
    psql(url, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)")
    assert wait_for(lambda: try_psql(read_url, "SELECT count(*) FROM t") == "100", timeout=20)
    assert psql(read_url, "SELECT pg_is_in_recovery()") == "t"
    refused = subprocess.run(["psql", read_url, "-c", "INSERT INTO t VALUES (1)"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert "read-only transaction" in refused.stderr
    replica = datastore(shipyard, "main-db-replica")
    assert replica["primary"] == "main-db" and replica["status"] == "available"
    assert isinstance(replica["replication_lag_seconds"], float)
    assert replica["replication_lag_seconds"] < 30
    assert datastore(shipyard, "main-db")["replicas"] == ["main-db-replica"]


def test_a_crashed_database_server_is_restarted(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("databases:\n  - name: crashy\n", name="shipyard.yaml")
    deploy(shipyard, bp)
    before = datastore(shipyard, "crashy")
    url = shipyard.ok("psql", "crashy", "--", "-AtXc", "SELECT 1").out.strip()
    assert url == "1"
    psutil.Process(int(str(before["pid"]))).kill()  # the postmaster, SIGKILL

    def restarted() -> dict[str, object] | None:
        now = datastore(shipyard, "crashy")
        back = now["status"] == "available" and now["running"]
        return now if back and now["pid"] != before["pid"] else None

    after = wait_for(restarted, timeout=60)
    assert after["restarts"] == 1
    assert shipyard.ok("psql", "crashy", "--", "-AtXc", "SELECT 2").out.strip() == "2"


def redis_cli(url: str, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-u", url, "--no-auth-warning", *args],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_key_value_is_provisioned_persistent_and_private(
    own_shipyard: Shipyard, project: Project
) -> None:
    sy = own_shipyard
    bp = project.blueprint(
        "services:\n"
        + web("cacher", "v1", instances=1, extra_env="""\
      - key: REDIS_URL
        fromService: {type: redis, name: cache, property: connectionString}
      - key: REDIS_HOSTPORT
        fromService: {type: keyvalue, name: cache, property: hostport}
""")
        + """
  - type: keyvalue
    name: cache
    ipAllowList: []
    maxmemoryPolicy: noeviction
    plan: free
"""
    )  # fmt: skip
    deploy(sy, bp)
    url = app_env(sy, "cacher", "REDIS_URL")
    info = datastore(sy, "cache")
    assert url.startswith("redis://default:") and url.endswith(f"@127.0.0.1:{info['port']}")
    assert app_env(sy, "cacher", "REDIS_HOSTPORT") == f"127.0.0.1:{info['port']}"
    assert info["kind"] == "keyvalue" and info["version"] == "7" and info["running"]
    password = url.split(":")[2].split("@")[0]
    assert password not in json.dumps(info)
    assert redis_cli(url, "SET", "greeting", "hello") == "OK"
    assert redis_cli(url, "CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "noeviction"
    assert int(redis_cli(url, "CONFIG", "GET", "maxmemory").splitlines()[1]) == 25 * 1024**2
    noauth = subprocess.run(["redis-cli", "-p", str(info["port"]), "GET", "greeting"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert "NOAUTH" in noauth.stdout + noauth.stderr
    assert sy.ok("redis-cli", "cache", "--", "GET", "greeting").out.strip() == "hello"
    server = int(str(info["pid"]))
    assert psutil.Process(server).username() == "redis"
    sy.kill_daemon()
    sy.up()
    assert datastore(sy, "cache")["pid"] == server  # re-adopted
    sy.down()
    sy.up()
    assert redis_cli(url, "GET", "greeting") == "hello"  # persisted (AOF) across down/up
    wrong = sy.cli("psql", "cache")
    assert wrong.code == 2 and "use `shipyard redis-cli cache`" in wrong.err
