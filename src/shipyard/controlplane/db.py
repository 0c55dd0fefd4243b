"""SQLite state (WAL) under SHIPYARD_HOME. Schema changes go through MIGRATIONS.

Short transactions only; every thread gets its own connection. Rows are returned as plain dicts
so callers never hold a cursor across a slow operation.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE services (
        name TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        blueprint_path TEXT NOT NULL,
        desired_instances INTEGER NOT NULL,
        blueprint_instances INTEGER NOT NULL,
        internal_port INTEGER,
        current_release INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE releases (
        service TEXT NOT NULL,
        number INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        finished_at REAL,
        live_at REAL,
        config_digest TEXT NOT NULL,
        git_commit TEXT NOT NULL DEFAULT '',
        git_branch TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        dir TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        env_enc BLOB NOT NULL,
        deploy_id INTEGER,
        PRIMARY KEY (service, number)
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        release INTEGER NOT NULL,
        port INTEGER NOT NULL,
        pid INTEGER,
        start_time INTEGER,
        state TEXT NOT NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        last_exit TEXT NOT NULL DEFAULT '',
        restart_at REAL,
        crash_times TEXT NOT NULL DEFAULT '[]',
        log_path TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL
    );
    CREATE INDEX instances_service ON instances(service, state);
    CREATE TABLE deploys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        finished_at REAL,
        result_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE deploy_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deploy_id INTEGER NOT NULL,
        ts REAL NOT NULL,
        service TEXT NOT NULL DEFAULT '',
        level TEXT NOT NULL DEFAULT 'info',
        message TEXT NOT NULL
    );
    CREATE INDEX deploy_events_deploy ON deploy_events(deploy_id, id);
    CREATE TABLE generated_values (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        value_enc BLOB NOT NULL,
        PRIMARY KEY (service, key)
    );
    """,
    # 2: releases a rollback may use: built and past their pre-deploy command
    """
    ALTER TABLE releases ADD COLUMN deployable INTEGER NOT NULL DEFAULT 0;
    UPDATE releases SET deployable = 1 WHERE status IN ('live', 'superseded', 'rolled-back');
    """,
    # 3: artifacts removed by retention (build logs stay)
    """
    ALTER TABLE releases ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: the error class of a failed operation (build_failed, deploy_failed, ...), so the CLI
    # exits with that error's own code
    """
    ALTER TABLE deploys ADD COLUMN error_code TEXT NOT NULL DEFAULT '';
    """,
    # 5: the $PORT an instance was given, beside the port it listens on (fixed-port apps)
    """
    ALTER TABLE instances ADD COLUMN assigned_port INTEGER;
    """,
    # 6: managed datastores (PostgreSQL, Key Value) and their secrets
    """
    CREATE TABLE datastores (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        version TEXT NOT NULL,
        port INTEGER NOT NULL UNIQUE,
        dir TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        pid INTEGER,
        start_time INTEGER,
        blueprint_path TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL DEFAULT 'blueprint',
        restarts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL
    );
    CREATE TABLE datastore_secrets (
        datastore TEXT NOT NULL,
        key TEXT NOT NULL,
        value_enc BLOB NOT NULL,
        PRIMARY KEY (datastore, key)
    );
    """,
    # 7: backups (what was run, by whom, how it ended) and restore drills of datastores
    """
    CREATE TABLE backups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        datastore TEXT NOT NULL,
        trigger TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        backup_ids TEXT NOT NULL DEFAULT '[]',
        size_bytes INTEGER,
        started_at REAL NOT NULL,
        finished_at REAL,
        error TEXT NOT NULL DEFAULT '',
        deploy_id INTEGER
    );
    CREATE INDEX backups_datastore ON backups(datastore, id);
    CREATE TABLE drills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        datastore TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        backup_id TEXT NOT NULL DEFAULT '',
        target_at REAL,
        heartbeat_at REAL,
        recovery_point_s REAL,
        restore_s REAL,
        error TEXT NOT NULL DEFAULT '',
        deploy_id INTEGER
    );
    CREATE INDEX drills_datastore ON drills(datastore, id);
    """,
    # 8: env values set by the operator (`shipyard env set`), per service or env group; they
    # supply `sync: false` keys and keys the Blueprint does not have
    """
    CREATE TABLE env_values (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value_enc BLOB NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    """,
    # 9: git push, watched repositories, deploy hooks and webhooks: Shipyard's repositories,
    # where each service's code comes from, its hook secrets, webhook deliveries seen
    """
    CREATE TABLE repos (
        name TEXT PRIMARY KEY,
        work_dir TEXT NOT NULL,
        branch TEXT NOT NULL,
        token_enc BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE service_sources (
        service TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        location TEXT NOT NULL,
        branch TEXT NOT NULL DEFAULT '',
        blueprint TEXT NOT NULL DEFAULT '',
        blueprint_id TEXT NOT NULL,
        auto_deploy INTEGER NOT NULL DEFAULT 1,
        build_filter TEXT NOT NULL DEFAULT '{}',
        root_dir TEXT NOT NULL DEFAULT '',
        last_commit TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL
    );
    CREATE TABLE service_hooks (
        service TEXT PRIMARY KEY,
        token_enc BLOB NOT NULL,
        secret_enc BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        received_at REAL NOT NULL
    );
    """,
    # 10: environments: the environment of a Blueprint project a service belongs to, and its
    # name in the Blueprint (`api` of `staging` is the service `api-staging`)
    """
    ALTER TABLE services ADD COLUMN environment TEXT;
    ALTER TABLE services ADD COLUMN base_name TEXT;
    """,
    # 11: cron runs: one row per run of a cron job (or per run skipped because the previous
    # one was still running); at most one running run per service
    """
    CREATE TABLE cron_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        release INTEGER,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        scheduled_at REAL,
        started_at REAL NOT NULL,
        finished_at REAL,
        exit_code INTEGER,
        pid INTEGER,
        start_time INTEGER,
        log_path TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX cron_runs_by_service ON cron_runs (service, id);
    CREATE UNIQUE INDEX cron_runs_one_running ON cron_runs (service) WHERE status = 'running'
    """,
]


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for index, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {index}")

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on this thread's connection: it changes when another
        connection committed, so a reader can tell its last read is still current."""
        return int(self._connect().execute("PRAGMA data_version").fetchone()[0])

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        row = self._connect().execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self._connect().execute(sql, params).fetchall()]

    def execute(self, sql: str, *params: Any) -> int:
        """Run one statement in its own transaction; returns lastrowid."""
        with self.tx() as conn:
            cur = conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
