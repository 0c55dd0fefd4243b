"""The DatastoreEngine protocol: what the data stage asks of a kind of datastore (PostgreSQL in
drivers/postgres, Key Value in drivers/redis). The stage owns the lifecycle (rows, ports,
secrets, starting and supervising the server through the Runtime); an engine knows its
server: its files, its command line, when it is ready, what it tells about itself.

Contract shared by every method: ``ds`` is the datastore's current row, ``secrets`` its
decrypted secrets (never logged, never in an error message). Failures raise
:class:`~shipyard.errors.RuntimeFailure` (or UsageError for a spec the machine cannot serve).
Only ``wait_ready`` and ``configure`` may block, up to their timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipyard.blueprint.spec import DatastoreSpec
from shipyard.records import Datastore
from shipyard.run.runtime import ProcessSpec


@dataclass(frozen=True)
class DatastoreFacts:
    """What a running datastore tells about itself, for `db list` / `db info`."""

    size_bytes: int | None = None
    connections: int | None = None
    max_connections: int | None = None
    in_recovery: bool | None = None
    replication_lag_s: float | None = None  # a replica's replay lag
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific, JSON-able


@dataclass(frozen=True)
class BackupEntry:
    """One backup as its engine lists it."""

    id: str  # pgBackRest's label, or the file name of a Key Value snapshot
    kind: str  # full | diff | incr | rdb
    started_at: float
    finished_at: float
    size_bytes: int | None  # the data it holds
    stored_bytes: int | None  # what it takes in the repository (compressed, encrypted)
    locations: tuple[str, ...]  # "local", "s3"


@dataclass(frozen=True)
class RestorePoint:
    """What a restore recovers: the newest state (``latest``), one backup, or a moment."""

    kind: str  # latest | backup | time
    backup_id: str | None = None
    time: float | None = None  # epoch seconds (UTC)


class DatastoreEngine(Protocol):
    kind: str
    stop_signal: int  # PostgreSQL's fast shutdown is SIGINT; Redis saves on SIGTERM
    stop_grace_s: float

    def version_for(self, spec: DatastoreSpec) -> str:
        """The server version ``spec`` gets (its requested version, or the newest installed);
        UsageError naming the version and how to install it when it is not installed."""
        ...

    def check(self, spec: DatastoreSpec) -> None:
        """UsageError for a spec this machine cannot serve (a version not installed, an
        unknown plan), before anything is created or changed."""
        ...

    def new_secrets(self, spec: DatastoreSpec) -> dict[str, str]:
        """Generated secrets of a new datastore (its password, ...)."""
        ...

    def provision(
        self, ds: Datastore, secrets: Mapping[str, str], primary: Datastore | None
    ) -> None:
        """Create the datastore's files under ``ds.dir`` when they do not exist yet (a
        replica copies ``primary``); write its configuration every time. Idempotent."""
        ...

    def process(self, ds: Datastore, secrets: Mapping[str, str], log_dir: Path) -> ProcessSpec:
        """How to start its server (foreground, output to ``log_dir``)."""
        ...

    def wait_ready(
        self, ds: Datastore, secrets: Mapping[str, str], timeout_s: float,
        alive: Callable[[], bool],
    ) -> None:  # fmt: skip
        """Block until the server accepts connections (a PostgreSQL server has also finished
        recovery unless it is a replica); RuntimeFailure at once when ``alive()`` turns false,
        or after ``timeout_s``."""
        ...

    def configure(self, ds: Datastore, secrets: Mapping[str, str]) -> None:
        """Once ready: make what the spec describes exist in the server (roles, database,
        password, Shipyard's heartbeat schema). Idempotent."""
        ...

    def connection(self, ds: Datastore, secrets: Mapping[str, str]) -> dict[str, str]:
        """The properties apps are given (Render's names: connectionString, host, port, user,
        password, database for PostgreSQL; connectionString, host, port, hostport for Key
        Value). Pure."""
        ...

    def facts(self, ds: Datastore, secrets: Mapping[str, str]) -> DatastoreFacts:
        """What it tells about itself now; quick (a second at most), never raises: what
        cannot be read is None."""
        ...

    def client_command(
        self, ds: Datastore, secrets: Mapping[str, str], args: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """argv and environment of the interactive client (psql, redis-cli) connected as the
        owner, with ``args`` appended; the password travels in the environment only."""
        ...

    # -- backups (blocking; minutes for a large datastore) -----------------------------------

    def backup(self, ds: Datastore, secrets: Mapping[str, str], kind: str) -> list[BackupEntry]:
        """Take a backup (``kind``: full or diff for PostgreSQL; ignored by Key Value) into
        every repository; what was taken. RuntimeFailure with the tool's own message."""
        ...

    def backups(self, ds: Datastore, secrets: Mapping[str, str]) -> list[BackupEntry]:
        """Every backup kept, oldest first (what the repositories hold, not a cache)."""
        ...

    def restorable_since(self, ds: Datastore, secrets: Mapping[str, str]) -> float | None:
        """The earliest moment a restore can recover to; None without backups."""
        ...

    def restored_to(self, ds: Datastore, secrets: Mapping[str, str]) -> float | None:
        """For a restored, running ``ds``: the newest moment its data holds (PostgreSQL: the
        newest heartbeat row; Key Value: when its snapshot was taken); None if unknown."""
        ...

    def restore_files(
        self, source: Datastore, secrets: Mapping[str, str], point: RestorePoint,
        dest: Datastore, location: str | None = None,
    ) -> None:  # fmt: skip
        """Write ``dest``'s files from ``source``'s backups (``dest`` not yet started, its
        directory empty): what ``provision`` then configures and ``start`` runs. UsageError
        for a point that cannot be restored (before the first backup, in the future, an
        unknown backup), raised before anything is written."""
        ...
