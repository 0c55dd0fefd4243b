"""The control plane's records: services, releases, instances, operations and their events.

Typed, immutable, with StrEnum statuses. The state store (``controlplane/state.py``) reads and
writes them; the stages (``rollout/``, ``run/``, ``route/``) and the API views take them. A
record is a snapshot read in one short transaction: re-read it before acting on a field another
actor may have changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from shipyard.blueprint.spec import DatastoreSpec, ServiceSpec

ServiceType = Literal["web", "pserv", "worker", "cron"]


class ReleaseStatus(StrEnum):
    """building -> built -> deploying -> live -> superseded | rolled-back;
    building -> build-failed; built/deploying -> failed."""

    BUILDING = "building"
    BUILD_FAILED = "build-failed"
    BUILT = "built"
    DEPLOYING = "deploying"
    LIVE = "live"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"


UNFINISHED_RELEASE = (ReleaseStatus.BUILDING, ReleaseStatus.BUILT, ReleaseStatus.DEPLOYING)


class InstanceState(StrEnum):
    """Only RUNNING and DRAINING instances are in the routing table."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    CRASHED = "crashed"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


# Instances that have (or may again have) a process.
ACTIVE_INSTANCE = (
    InstanceState.STARTING,
    InstanceState.RUNNING,
    InstanceState.DRAINING,
    InstanceState.CRASHED,
    InstanceState.RESTARTING,
    InstanceState.STOPPING,
)
# The instances that make up a release's presence: routed, or on their way (back) to it.
OF_RELEASE = (
    InstanceState.RUNNING,
    InstanceState.CRASHED,
    InstanceState.RESTARTING,
    InstanceState.STARTING,
)


class OperationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OperationKind(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    SCALE = "scale"
    CONVERGE = "converge"
    BACKUP = "backup"
    RESTORE = "restore"
    DRILL = "drill"


@dataclass(frozen=True)
class Service:
    name: str
    type: ServiceType
    spec: ServiceSpec  # the live release's (stored, redacted) spec; the Blueprint's until then
    blueprint_path: str  # stable id of the Blueprint it was deployed from
    desired_instances: int
    blueprint_instances: int  # numInstances of the Blueprint when last deployed from it
    internal_port: int | None  # the stable internal listener (web and pserv)
    current_release: int | None
    created_at: float
    updated_at: float
    environment: str | None = None  # of a Blueprint project (migration 10); None at top level
    base_name: str | None = None  # its name in the Blueprint (`api` of `api-staging`)

    @property
    def deployed(self) -> bool:
        return self.current_release is not None


@dataclass(frozen=True)
class Release:
    service: str
    number: int
    status: ReleaseStatus
    reason: str
    created_at: float
    finished_at: float | None
    live_at: float | None
    config_digest: str
    git_commit: str
    git_branch: str
    source: str
    dir: str
    spec: ServiceSpec
    env_enc: bytes = field(repr=False)  # Fernet token of the resolved env (secret)
    deploy_id: int | None
    deployable: bool  # built and past its pre-deploy command: rollback may use it
    pruned: bool  # its artifact was removed by retention


@dataclass(frozen=True)
class Instance:
    id: str
    service: str
    release: int
    port: int
    pid: int | None
    start_time: int | None
    state: InstanceState
    restarts: int
    last_exit: str
    restart_at: float | None
    crash_times: tuple[float, ...]
    log_path: str
    created_at: float
    started_at: float | None
    assigned_port: int | None = None  # the $PORT it was given (port: the one it listens on)

    @property
    def fixed_port(self) -> bool:
        """The app ignored $PORT and listens on a port of its own choosing."""
        return self.assigned_port is not None and self.port != self.assigned_port


@dataclass(frozen=True)
class ServiceOutcome:
    """How an operation ended for one service."""

    status: Literal["ok", "failed"]
    error: str = ""
    code: str = ""  # the ShipyardError code of the failure
    release: int | None = None
    instances: int | None = None


@dataclass(frozen=True)
class Operation:
    """A deploy, rollback, scale or converge: one row, its events, its outcome per service."""

    id: int
    kind: OperationKind
    target: str
    status: OperationStatus
    error: str
    error_code: str
    created_at: float
    finished_at: float | None
    result: dict[str, ServiceOutcome]


@dataclass(frozen=True)
class Event:
    id: int
    deploy_id: int
    ts: float
    service: str
    level: Literal["info", "warning", "error"]
    message: str


# --- datastores -------------------------------------------------------------------------------


class DatastoreStatus(StrEnum):
    """creating -> available; available -> restarting (crashed) -> available; available ->
    stopped (`shipyard down`) -> available (`up`); creating/restarting -> failed."""

    CREATING = "creating"
    AVAILABLE = "available"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"
    DELETED = "deleted"  # its server and data are gone; its backups are kept for retention


DatastoreKind = Literal["postgres", "keyvalue"]


@dataclass(frozen=True)
class Datastore:
    """A managed PostgreSQL database (or read replica) or Key Value instance."""

    name: str
    kind: DatastoreKind
    spec: DatastoreSpec
    version: str  # the server's major version (PostgreSQL "15", Redis "7")
    port: int
    dir: str  # its directory under SHIPYARD_HOME/data
    status: DatastoreStatus
    reason: str
    pid: int | None
    start_time: int | None
    blueprint_path: str  # the Blueprint that declared it ("" for a restore)
    origin: str  # "blueprint", or what it was restored from
    restarts: int
    created_at: float
    updated_at: float
    started_at: float | None

    @property
    def label(self) -> str:
        what = "Key Value" if self.kind == "keyvalue" else "database"
        if self.spec.primary:
            what = "read replica"
        return f"{what} '{self.name}'"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class BackupRun:
    """One backup Shipyard ran (scheduled, on request, before a deploy)."""

    id: int
    datastore: str
    trigger: Literal["schedule", "manual", "pre-deploy", "created"]
    kind: str
    status: RunStatus
    backup_ids: tuple[str, ...]  # what the engine lists it as (pgBackRest labels, files)
    size_bytes: int | None
    started_at: float
    finished_at: float | None
    error: str
    deploy_id: int | None


@dataclass(frozen=True)
class Drill:
    """A restore drill: the latest backup and archived WAL restored into a throwaway server."""

    id: int
    datastore: str
    status: RunStatus
    started_at: float
    finished_at: float | None
    backup_id: str
    target_at: float | None  # the moment the restore recovered to (when it began)
    heartbeat_at: float | None  # the newest heartbeat found in the restored data
    recovery_point_s: float | None  # target_at - heartbeat_at: data a disaster would lose
    restore_s: float | None  # restore + recovery + check, seconds
    error: str
    deploy_id: int | None

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED
