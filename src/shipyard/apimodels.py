"""The REST API's request and response bodies, shared by the server (``controlplane/api.py``),
the typed client (``client.py``) and, later, the dashboard. The OpenAPI description is generated
from these: what they accept, the server accepts; what they describe, the server returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests --------------------------------------------------------------------------------


class SourceBody(Model):
    blueprint: str | None = Field(
        None, description="Blueprint file or directory: an absolute path, or with `repo` a path "
        "inside the repository (default: shipyard.yaml or render.yaml at its root)",
    )  # fmt: skip
    repo: str | None = Field(None, description="git repository URL or path")
    branch: str | None = Field(None, description="branch of `repo` (default: main)")

    def _has_content(self) -> bool:
        return False

    def _sources(self) -> str:
        return "`blueprint` as an absolute path, or `repo`"

    @model_validator(mode="after")
    def _source_is_explicit(self) -> SourceBody:
        # The daemon's working directory is nobody's business: say where the source is.
        if self._has_content():
            if self.blueprint is not None or self.repo is not None:
                raise ValueError("give `blueprint_text` alone, without `blueprint` or `repo`")
            return self
        if self.repo is None and not (self.blueprint and self.blueprint.startswith("/")):
            raise ValueError(f"give {self._sources()}")
        if self.branch is not None and self.repo is None:
            raise ValueError("`branch` needs `repo`")
        return self


class PlanBody(SourceBody):
    blueprint_text: str | None = Field(
        None, description="the Blueprint's content, instead of `blueprint` or `repo`",
    )  # fmt: skip
    filename: str = Field(
        "render.yaml", pattern=r"^(render|shipyard)\.ya?ml$",
        description="with `blueprint_text`: the file name it stands for (its kind, and the "
        "name in error positions)",
    )  # fmt: skip

    def _has_content(self) -> bool:
        return self.blueprint_text is not None

    def _sources(self) -> str:
        return "`blueprint` as an absolute path, `repo`, or `blueprint_text`"


class DeployBody(SourceBody):
    services: list[str] | None = Field(None, description="deploy only these services")
    adopt: bool = Field(False, description="take over services another Blueprint created")
    prune: bool = Field(
        False, description="remove the services this Blueprint created and no longer lists"
    )
    clear_cache: bool = Field(False, description="build without the services' build caches")


class RollbackBody(Model):
    to: int | None = Field(None, ge=1, description="release number (default: the last good one)")


class ScaleBody(Model):
    instances: int = Field(ge=1, le=100)


# -- responses -------------------------------------------------------------------------------


class ErrorBody(Model):
    """Every error: a stable ``code`` (the client rebuilds the same exception class from it),
    a message saying what is wrong, where and what to do, and structured ``fields``."""

    code: str
    msg: str
    fields: dict[str, Any] = Field(default_factory=dict)


class DiskView(Model):
    path: str
    free_bytes: int
    total_bytes: int
    min_free_bytes: int = Field(description="SHIPYARD_MIN_FREE_MB: deploys need this much")
    low: bool = Field(description="free space is below the minimum: deploys are refused")
    summary: str


class Health(Model):
    status: Literal["ok"]
    version: str
    # Which daemon answered: `up` checks it started this one, not another Shipyard's.
    home: str | None = None
    pid: int | None = None
    disk: DiskView | None = None


class InstanceView(Model):
    id: str
    release: int
    state: str
    port: int
    pid: int | None
    restarts: int = Field(description="restarts over the instance's whole life (history)")
    recent_restarts: int = Field(
        0, description="restarts within the crash window (10 min): the current state"
    )
    last_exit: str
    crash_loop: bool = Field(
        description="crashing now (not running) after repeated crashes in the window; a "
        "running instance is never in a crash loop, whatever its history"
    )
    restart_in: float | None = Field(description="seconds until a crashed instance restarts")
    started_at: float | None
    summary: str = Field("", description='for people: "running, 3 restarts in the last 10 min"')


ServiceStatus = Literal[
    "deploying", "not deployed", "failed", "crash-loop", "live", "degraded", "down"
]


class ServiceDiskView(Model):
    name: str
    mount_path: str
    size_gb: int
    used_bytes: int
    enforced: bool = Field(
        description="the size is a hard limit (its own filesystem), not only reported"
    )


class ServiceView(Model):
    name: str
    type: str
    runtime: str
    blueprint: str
    current_release: int | None
    desired_instances: int
    running_instances: int
    status: ServiceStatus
    never_served: bool = Field(
        False,
        description="no release of it ever went live (status `failed`: its first deploy "
        "failed; `shipyard logs NAME --build` shows why)",
    )
    last_failure: str | None = Field(
        None,
        description="why its newest release failed, when that release is newer than the "
        "live one (or there is none)",
    )
    env_keys: list[str] = Field(description="env var keys only: values are never returned")
    instances: list[InstanceView]
    url: str | None = Field(None, description="web services: the public URL")
    domains: list[str] | None = Field(None, description="web services: custom domains")
    internal_hostport: str | None = Field(
        None, description="web and private services: the address other services use"
    )
    disk: ServiceDiskView | None = Field(None, description="its persistent disk, if any")
    cron: CronJobView | None = Field(None, description="cron jobs: schedule, last and next run")
    environment: str | None = Field(
        None, description="the Blueprint project environment it belongs to (projects:), if any"
    )
    base_name: str | None = Field(
        None, description="its name in the Blueprint, in an environment (`api` of api-staging)"
    )


class ReleaseView(Model):
    number: int
    status: str
    reason: str
    created_at: float
    finished_at: float | None
    live_at: float | None
    config_digest: str
    git_commit: str
    git_branch: str
    source: str
    deploy_id: int | None
    deployable: bool
    pruned: bool
    current: bool


class OutcomeView(Model):
    status: Literal["ok", "failed"]
    error: str = ""
    code: str = ""
    release: int | None = None
    instances: int | None = None


class OperationView(Model):
    id: int
    kind: str
    target: str
    status: Literal["running", "succeeded", "failed", "cancelled"]
    error: str
    error_code: str = Field(description="the error code of the first failure, e.g. build_failed")
    created_at: float
    finished_at: float | None
    result: dict[str, OutcomeView]


class EventView(Model):
    id: int
    deploy_id: int
    ts: float
    service: str
    level: Literal["info", "warning", "error"]
    message: str


class EventsPage(Model):
    deploy: OperationView
    events: list[EventView]


class PlanStepView(Model):
    service: str
    type: str
    action: Literal["create", "update", "redeploy"]
    changes: list[str]


class NoticeView(Model):
    location: str
    path: str
    message: str


class DatastoreStepView(Model):
    name: str
    kind: Literal["postgres", "keyvalue"]
    action: Literal["create", "update", "unchanged"]
    changes: list[str]


class PlanView(Model):
    blueprint: str
    source: str
    commit: str
    steps: list[PlanStepView]
    orphans: list[str]
    problems: list[str]
    notices: list[NoticeView]
    datastores: list[DatastoreStepView] = Field(
        default_factory=list, description="databases, read replicas and Key Value instances"
    )
    kept_datastores: list[str] = Field(
        default_factory=list,
        description="datastores this Blueprint declared before and no longer does: a deploy "
        "never deletes one (`shipyard db delete NAME --yes` does)",
    )


class DeployAccepted(PlanView):
    id: int


class RollbackAccepted(Model):
    id: int
    service: str
    release: int


class ScaleAccepted(Model):
    id: int
    service: str
    instances: int


class LogLines(Model):
    lines: list[str]


class ShutdownAccepted(Model):
    status: Literal["stopping"]


# -- datastores ------------------------------------------------------------------------------

DatastoreStatusName = Literal["creating", "available", "restarting", "stopped", "failed", "deleted"]


class BackupPolicyView(Model):
    schedule: str = Field(description="cron (UTC) of full/differential backups")
    retention_days: int
    pitr_retention_days: int
    drill_schedule: str = Field(description="cron (UTC) of restore drills")
    offsite: bool


class DatastoreView(Model):
    name: str
    kind: Literal["postgres", "keyvalue"]
    version: str
    status: DatastoreStatusName
    reason: str = Field(description="why it is failed or restarting")
    port: int
    host: str
    running: bool
    pid: int | None
    primary: str | None = Field(description="a read replica: the database it follows")
    replicas: list[str]
    size_bytes: int | None = Field(description="its data (None while it cannot be asked)")
    connections: int | None
    max_connections: int | None
    replication_lag_seconds: float | None = Field(description="a read replica's replay lag")
    restarts: int
    blueprint: str
    origin: str
    created_at: float
    started_at: float | None
    last_backup: float | None = Field(None, description="when its newest backup finished")


class DatastoreInfo(DatastoreView):
    connection_string: str = Field(description="the owner's connection string, password masked")
    database: str | None
    user: str | None
    plan: str | None
    ip_allow_list: list[str]
    disk_size_gb: int | None
    maxmemory_policy: str | None
    backups: BackupPolicyView
    details: dict[str, Any] = Field(description="kind-specific: WAL archiver status, memory")
    restorable_since: float | None = Field(
        None, description="the start of the point-in-time recovery window"
    )
    last_backup_status: str | None = None
    last_drill: DrillView | None = None


class ClientBody(Model):
    args: list[str] = Field(default_factory=list, description="appended to the client's argv")


class ClientCommand(Model):
    """How to run the interactive client (psql, redis-cli) as the owner. The one response
    that carries a secret (the password, in `env`): the caller runs it and shows nothing."""

    argv: list[str]
    env: dict[str, str]


class BackupBody(Model):
    kind: Literal["full", "diff"] | None = Field(
        None, description="PostgreSQL: the backup type (default: full when the newest full "
        "backup is a week old, else differential)",
    )  # fmt: skip


class RestoreBody(Model):
    new_name: str = Field(description="the NEW datastore restored into (`--as`)")
    to_time: str | None = Field(None, description="ISO 8601 moment to recover (PITR)")
    to_backup: str | None = Field(None, description="a backup id from `db backups`")
    latest: bool = Field(False, description="the newest state the backups hold")
    source: Literal["local", "s3"] | None = Field(
        None, description="restore from this repository only (default: any)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> RestoreBody:
        given = [self.to_time is not None, self.to_backup is not None, self.latest]
        if sum(given) != 1:
            raise ValueError("give exactly one of to_time, to_backup, latest")
        return self


class DataOpAccepted(Model):
    id: int = Field(description="the operation (follow it like a deploy)")
    datastore: str
    action: Literal["backup", "restore", "drill"]


class BackupView(Model):
    id: str
    kind: str
    started_at: float
    finished_at: float
    size_bytes: int | None = Field(description="the data it holds")
    stored_bytes: int | None = Field(description="what it takes in the repository")
    locations: list[str]


class BackupRunView(Model):
    id: int
    trigger: str
    kind: str
    status: Literal["running", "succeeded", "failed"]
    backup_ids: list[str]
    size_bytes: int | None
    started_at: float
    finished_at: float | None
    error: str


class BackupsView(Model):
    datastore: str
    backups: list[BackupView] = Field(description="what the repositories hold, oldest first")
    runs: list[BackupRunView] = Field(description="the backups Shipyard ran, newest first")
    restorable_since: float | None = Field(description="the earliest moment a restore reaches")


class DrillView(Model):
    id: int
    datastore: str
    status: Literal["running", "succeeded", "failed"]
    ok: bool
    started_at: float
    finished_at: float | None
    backup_id: str
    recovery_point_seconds: float | None = Field(
        description="the drill's target minus the newest heartbeat found: data a disaster "
        "would have lost"
    )
    restore_seconds: float | None
    error: str


class DeleteResult(Model):
    datastore: str
    status: Literal["deleted"]
    backups_kept_until: float | None = Field(description="when its backups are purged")


class DiskSnapshotView(Model):
    id: str
    service: str
    disk: str
    created_at: float
    size_bytes: int = Field(description="the sealed (encrypted, compressed) snapshot")
    used_bytes: int = Field(description="the disk's data when it was taken")
    trigger: str


class DiskRestoreBody(Model):
    snapshot: str = Field(description="a snapshot id from `disk snapshots`")


class DiskRestoreAccepted(Model):
    id: int = Field(description="the operation (follow it like a deploy)")
    service: str
    snapshot: str


class EnvEntryView(Model):
    key: str
    source: Literal["blueprint", "set", "group-set", "platform"] = Field(
        description="blueprint: the Blueprint gives it; set: `shipyard env set`; group-set: "
        "`env set --group`"
    )
    value: str | None = Field(description="masked unless reveal=true")


class EnvView(Model):
    service: str
    entries: list[EnvEntryView]


class EnvBody(Model):
    set: dict[str, str] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    deploy: bool = Field(True, description="roll out a new release with the new env")
    group: str | None = Field(None, description="change an env group's values instead")


class EnvChanged(Model):
    service: str
    id: int | None = Field(description="the rollout's operation, when one started")
    operations: list[int] = Field(
        default_factory=list, description="with --group: the rollout of each service using it"
    )


class KeyRotated(Model):
    values: int = Field(description="stored values re-encrypted with the new key")


# -- projects and environments: promote ------------------------------------------------------


class PromoteBody(Model):
    service: str = Field(description="the service's name in the Blueprint (`api`)")
    from_environment: str = Field(description="the environment whose live release is promoted")
    to_environment: str = Field(description="the environment it is rolled out in")


class PromoteAccepted(Model):
    id: int = Field(description="the operation (follow it like a deploy)")
    service: str = Field(description="the service's name in the Blueprint")
    source: str = Field(description="the service promoted from (`api-staging`)")
    target: str = Field(description="the service rolled out (`api-production`)")
    release: int = Field(description="the source's release whose artifact is rolled out")
    from_environment: str
    to_environment: str


# -- cron jobs -------------------------------------------------------------------------------


class CronRunView(Model):
    id: int
    service: str
    status: Literal["running", "succeeded", "failed", "skipped", "timed_out", "interrupted"]
    trigger: Literal["schedule", "manual"]
    release: int | None = Field(description="the release the run executed")
    scheduled_at: float | None = Field(description="the due time it was started (or skipped) for")
    started_at: float
    finished_at: float | None
    exit_code: int | None
    reason: str = Field(description="why it was skipped, timed out, interrupted or not started")
    log: str = Field(description="its log directory ('' for a skipped run)")


class CronJobView(Model):
    schedule: str = Field(description="cron, 5 fields, UTC")
    max_run_seconds: float = Field(description="a run is killed after this long")
    running: CronRunView | None = Field(description="the run in progress, if any")
    last_run: CronRunView | None = Field(description="the newest run started (not a skip)")
    next_run: float | None = Field(description="when the schedule next fires")
