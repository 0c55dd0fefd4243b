"""Blueprint models: the raw, strict pydantic shape of render.yaml / shipyard.yaml (the
normalized ``ServiceSpec`` the rest of Shipyard uses is in spec.py).

Raw models mirror Render's public Blueprint spec field by field (camelCase aliases, unknown keys
rejected); see REFERENCE.md "Render Blueprint spec".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shipyard.blueprint.scalars import (
    Bool,
    Cidr,
    Command,
    EnvKey,
    EnvValue,
    HealthPath,
    Hostname,
    MountPath,
    Percent,
    PgName,
    RootDir,
    Runtime,
    ServiceName,
    Str,
    plain_str,
    to_str,
    yaml_bool,
)

NATIVE_RUNTIMES = frozenset({"node", "python", "ruby", "go", "rust", "elixir"})
RUNTIMES = ("docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static")
RunnableType = Literal["web", "pserv", "worker", "cron"]


class Strict(BaseModel):
    """Shared base: unknown keys are errors, no type coercion, camelCase keys as in the YAML."""

    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, frozen=True, populate_by_name=False
    )


# --- env vars -------------------------------------------------------------------------------


class RegistryCreds(Strict):
    name: str


class RegistryCredential(Strict):
    """``{fromRegistryCreds: {name: ...}}``, as Render's spec documents for registryCredential
    and image.creds."""

    from_registry_creds: RegistryCreds


class FromServiceRef(Strict):
    type: Literal["web", "pserv", "worker", "cron", "keyvalue", "redis"]
    name: str
    property: Literal["host", "port", "hostport", "connectionString"] | None = None
    env_var_key: str | None = None


class FromDatabaseRef(Strict):
    name: str
    property: Literal["connectionString", "host", "port", "user", "password", "database"]


class EnvVar(Strict):
    """One envVars item; which of the forms it is is checked after loading (all problems)."""

    key: EnvKey | None = None
    value: EnvValue | None = None
    generate_value: Annotated[Literal[True], BeforeValidator(yaml_bool)] | None = None
    sync: Annotated[Literal[False], BeforeValidator(yaml_bool)] | None = None
    # Value used in preview environments: render-examples/preview-environment.
    preview_value: EnvValue | None = None
    from_database: FromDatabaseRef | None = None
    from_service: FromServiceRef | None = None
    from_group: str | None = None


class GroupEnvVar(Strict):
    key: EnvKey
    value: EnvValue | None = None
    generate_value: Annotated[Literal[True], BeforeValidator(yaml_bool)] | None = None


def _none_as_empty(value: Any) -> Any:
    return [] if value is None else value


class EnvVarGroup(Strict):
    name: str
    # `envVars:` with every item commented out is null: render-examples/redash ships its
    # optional `redash-mail` group that way (Go decodes null into an empty list).
    env_vars: Annotated[list[GroupEnvVar], BeforeValidator(_none_as_empty)] = []


# --- nested service fields ------------------------------------------------------------------


class Scaling(Strict):
    min_instances: int = Field(ge=1)
    max_instances: int = Field(ge=1)
    target_cpu_percent: Percent | None = Field(None, alias="targetCPUPercent")
    target_memory_percent: Percent | None = None


class Disk(Strict):
    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    mount_path: MountPath
    size_gb: int = Field(10, ge=1, le=16384, alias="sizeGB")


class BuildFilter(Strict):
    paths: list[str] = []
    ignored_paths: list[str] = []


class IpAllow(Strict):
    source: Cidr
    description: str | None = None


CRON_FIELDS = 5


def _cron(value: Any) -> Any:
    """A 5-field cron expression (UTC), checked by croniter."""
    if not isinstance(value, str):
        return value
    from croniter import croniter  # imported here: loading most Blueprints never needs it

    text = " ".join(value.split())
    if len(text.split()) != CRON_FIELDS or not croniter.is_valid(text):
        raise ValueError(
            f"{value!r} is not a cron schedule: 5 fields (minute hour day month weekday), "
            "in UTC, for example '0 3 * * *' (daily at 03:00)"
        )
    return text


Cron = Annotated[str, AfterValidator(_cron)]


class Backups(Strict):
    """Shipyard extension (shipyard.yaml): when a datastore is backed up, how long backups
    are kept."""

    schedule: Cron | None = None
    retention_days: int | None = Field(None, ge=1, le=3650)
    pitr_retention_days: int | None = Field(None, ge=1, le=35)
    drill_schedule: Cron | None = None
    offsite: Bool | None = None


class Image(Strict):
    url: str
    creds: RegistryCredential | None = None


Generation = Annotated[Literal["automatic", "manual", "off"], BeforeValidator(plain_str)]


class ServicePreviews(Strict):
    generation: Generation | None = None
    plan: str | None = None
    num_instances: int | None = Field(None, ge=1, le=100)


class Header(Strict):
    path: str
    name: str
    value: str


class Route(Strict):
    type: Literal["redirect", "rewrite"]
    source: str
    destination: str


# --- services -------------------------------------------------------------------------------


class _Service(Strict):
    name: ServiceName
    plan: str | None = None
    region: str | None = None
    previews: ServicePreviews | None = None


class _BuiltService(_Service):
    runtime: Runtime | None = None
    env: Runtime | None = None  # legacy spelling of runtime
    repo: str | None = None
    branch: str | None = None
    root_dir: RootDir | None = None
    build_command: Command | None = None
    start_command: Command | None = None
    auto_deploy_trigger: (
        Annotated[Literal["off", "commit", "checksPass"], BeforeValidator(plain_str)] | None
    ) = None
    auto_deploy: Bool | None = None  # legacy
    build_filter: BuildFilter | None = None
    env_vars: list[EnvVar] = []
    docker_command: str | None = None
    dockerfile_path: str | None = None
    docker_context: str | None = None
    image: Image | None = None
    registry_credential: RegistryCredential | None = None


class _RunningService(_BuiltService):
    pre_deploy_command: Command | None = None
    initial_deploy_hook: str | None = None
    health_check_path: HealthPath | None = None
    num_instances: int = Field(1, ge=1, le=100)
    scaling: Scaling | None = None
    max_shutdown_delay_seconds: int = Field(30, ge=1, le=300)
    disk: Disk | None = None
    ip_allow_list: list[IpAllow] | None = None
    # Shipyard extensions (shipyard.yaml only; load.py rejects them in render.yaml).
    health_check_timeout_seconds: float | None = Field(None, ge=1, le=3600)
    drain_timeout_seconds: float | None = Field(None, ge=0, le=3600)
    backup_before_deploy: Bool | None = None


class WebService(_RunningService):
    type: Literal["web"]
    domains: list[Hostname] | None = None
    domain: Hostname | None = None  # legacy single domain
    static_publish_path: str | None = None
    headers: list[Header] | None = None
    routes: list[Route] | None = None
    pull_request_previews_enabled: Bool | None = None


class PrivateService(_RunningService):
    type: Literal["pserv"]


class WorkerService(_RunningService):
    type: Literal["worker"]


class CronService(_BuiltService):
    type: Literal["cron"]
    schedule: Cron
    # Shipyard extension (shipyard.yaml only): a run is killed after this long (default
    # SHIPYARD_CRON_MAX_RUN_S, 12 h as on Render).
    max_run_seconds: float | None = Field(None, ge=1, le=86400)


class KeyValueService(_Service):
    type: Literal["keyvalue"]
    ip_allow_list: list[IpAllow]
    preview_plan: str | None = None  # documented in Render's Key Value example
    # Disk persistence mode (Render changelog "Specify disk persistence behavior for paid Key
    # Value instances"; render-examples/langfuse4-template sets `journal-snapshot`).
    persistence_mode: Str | None = None
    maxmemory_policy: (
        Literal[
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "noeviction",
        ]
        | None
    ) = None
    backups: Backups | None = None  # Shipyard extension


class RedisService(KeyValueService):  # deprecated alias of keyvalue
    type: Literal["redis"]  # type: ignore[assignment]


AnyService = Annotated[
    WebService | PrivateService | WorkerService | CronService | KeyValueService | RedisService,
    Field(discriminator="type"),
]


class HighAvailability(Strict):
    enabled: Bool


class ReadReplica(Strict):
    name: str


class Database(Strict):
    name: str
    database_name: PgName | None = None
    user: PgName | None = None
    plan: str | None = None
    region: str | None = None
    disk_size_gb: int | None = Field(None, ge=1, alias="diskSizeGB")
    postgres_major_version: Annotated[str, BeforeValidator(to_str)] | None = None
    high_availability: HighAvailability | None = None
    ip_allow_list: list[IpAllow] | None = None
    read_replicas: list[ReadReplica] | None = None
    preview_plan: str | None = None  # documented in Render's database fields
    preview_disk_size_gb: int | None = Field(None, ge=1, alias="previewDiskSizeGB")  # documented
    previews: ServicePreviews | None = None  # render-examples/preview-environment: {plan: free}
    storage_autoscaling_enabled: Bool | None = None  # render-examples/langfuse4-template
    backups: Backups | None = None  # Shipyard extension


# --- root -----------------------------------------------------------------------------------


class Previews(Strict):
    generation: Generation | None = None
    expire_after_days: int | None = Field(None, ge=1)


class Networking(Strict):
    isolation: Annotated[Literal["enabled", "disabled"], BeforeValidator(plain_str)] | None = None


class Permissions(Strict):
    protection: Annotated[Literal["enabled", "disabled"], BeforeValidator(plain_str)] | None = None


class Resources(Strict):
    services: list[AnyService] = []
    databases: list[Database] = []
    env_var_groups: list[EnvVarGroup] = []


class Environment(Resources):
    name: str
    networking: Networking | None = None
    permissions: Permissions | None = None


class Project(Strict):
    name: str
    environments: list[Environment] = []
    env_var_groups: list[EnvVarGroup] = []


class Blueprint(Resources):
    """The whole file, as written."""

    version: Annotated[Literal["1"], BeforeValidator(to_str)] | None = None
    previews: Previews | None = None
    previews_enabled: Bool | None = None  # legacy
    previews_expire_after_days: int | None = Field(None, ge=1)  # legacy
    projects: list[Project] | None = None
    ungrouped: Resources | None = None
