"""The normalized Blueprint service (what the rest of Shipyard uses), built by load.py from
the raw models in model.py."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from pydantic import TypeAdapter

from shipyard.blueprint.model import RunnableType


@dataclass(frozen=True)
class FromService:
    type: str
    name: str
    property: str | None
    env_var_key: str | None


@dataclass(frozen=True)
class EnvVarSpec:
    key: str | None  # None only for a {fromGroup: x} item
    value: str | None = None  # numbers/bools in YAML become strings ("3000", "true")
    generate: bool = False
    sync: bool = True  # False for {key, sync: false}: the operator supplies the value
    from_service: FromService | None = None
    from_database: tuple[str, str] | None = None  # (name, property)
    from_group: str | None = None


@dataclass(frozen=True)
class EnvVarDigest:
    """An env var as the state stores it: its key, its kind and a keyed digest of its entry,
    never its value (values live only in the encrypted env snapshot of a release). A changed
    value still shows in `plan`."""

    key: str
    kind: str  # value | generate | sync | from_service | from_database | from_group
    digest: str


def _kind(entry: EnvVarSpec) -> str:
    if entry.value is not None:
        return "value"
    if entry.generate:
        return "generate"
    if entry.from_service is not None:
        return "from_service"
    if entry.from_database is not None:
        return "from_database"
    if entry.from_group is not None:
        return "from_group"
    return "sync"


@dataclass(frozen=True)
class DiskSpec:
    """A persistent disk of a service (Render's ``disk``): survives deploys, restarts and
    rollbacks; a service with one runs a single instance."""

    name: str
    mount_path: str  # absolute, normalized
    size_gb: int = 10


TRIGGER_FIELDS = frozenset(
    ("repo", "branch", "auto_deploy", "build_filter_paths", "build_filter_ignored")
)


@dataclass(frozen=True)
class ServiceSpec:
    """A service Shipyard runs now (web/pserv/worker on a native runtime), normalized."""

    name: str
    type: RunnableType
    runtime: str
    root_dir: str = ""  # normalized relative path, "" = repository root
    build_command: str | None = None
    start_command: str = ""
    pre_deploy_command: str | None = None
    health_check_path: str | None = None
    num_instances: int = 1
    max_shutdown_delay_seconds: int = 30
    env_vars: tuple[EnvVarSpec, ...] = ()
    env_digests: tuple[EnvVarDigest, ...] = ()  # the stored form of env_vars (see stored())
    domains: tuple[str, ...] = ()
    health_check_timeout_seconds: float | None = None  # shipyard.yaml extension
    drain_timeout_seconds: float | None = None  # shipyard.yaml extension
    backup_before_deploy: bool = False  # shipyard.yaml extension
    disk: DiskSpec | None = None
    # When a commit deploys it (not part of what a release is: kept out of config_digest)
    repo: str = ""  # Render's `repo`: the repository it watches ("" = the Blueprint's own)
    branch: str = ""  # Render's `branch` ("" = the Blueprint source's branch)
    auto_deploy: bool = True  # autoDeployTrigger commit/checksPass (legacy autoDeploy: true)
    build_filter_paths: tuple[str, ...] = ()
    build_filter_ignored: tuple[str, ...] = ()
    # cron jobs (type cron): the schedule (5-field cron, UTC) and the shipyard.yaml extension
    # maxRunSeconds (None: SHIPYARD_CRON_MAX_RUN_S)
    schedule: str = ""
    max_run_seconds: float | None = None
    # Render's projects: the environment it belongs to and its name in the Blueprint (`api`
    # of environment `staging` is named `api-staging`); None at the top level
    environment: str | None = None
    base_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists), for the API."""
        data: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return data

    def config_digest(self) -> str:
        """sha256 hex of the canonical JSON of every field but the triggers (TRIGGER_FIELDS):
        equal digests = same config. Take it of the stored spec, whose env values are keyed
        digests: a bare hash of a secret would let anyone holding the state test guesses
        against it."""
        data = {k: v for k, v in self.to_dict().items() if k not in TRIGGER_FIELDS}
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def stored(self, digest: Callable[[str], str]) -> ServiceSpec:
        """The spec as the state keeps it: env values replaced by ``digest`` (a keyed digest,
        SecretBox.digest) of each entry."""
        digests = tuple(
            EnvVarDigest(
                key=str(e.key or e.from_group),
                kind=_kind(e),
                digest=digest(json.dumps(asdict(e), sort_keys=True)),
            )
            for e in self.env_vars
        )
        return replace(self, env_vars=(), env_digests=(*self.env_digests, *digests))

    @property
    def env_keys(self) -> list[str]:
        """The keys of the service's own env vars (not those of groups), sorted."""
        keys = [e.key for e in self.env_vars if e.key] + [
            d.key for d in self.env_digests if d.kind != "from_group"
        ]
        return sorted(set(keys))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServiceSpec:
        """The spec stored as ``text``; parsed once per distinct text (specs are immutable,
        and every routing table and state read parses every service's)."""
        return _parse_stored(text)


@functools.lru_cache(maxsize=4096)
def _parse_stored(text: str) -> ServiceSpec:
    data = json.loads(text)
    # Before typed state (migration 4), stored env vars were {key, kind, digest} dicts.
    legacy = [e for e in data.get("env_vars", []) if "digest" in e]
    if legacy:
        data["env_vars"] = [e for e in data["env_vars"] if "digest" not in e]
        data["env_digests"] = [*data.get("env_digests", []), *legacy]
    return _SPEC.validate_python(data)


_SPEC: TypeAdapter[ServiceSpec] = TypeAdapter(ServiceSpec)


# --- datastores -------------------------------------------------------------------------------

DEFAULT_BACKUP_SCHEDULE = "0 3 * * *"  # daily, 03:00 UTC
DEFAULT_DRILL_SCHEDULE = "0 4 * * 0"  # weekly, Sunday 04:00 UTC


@dataclass(frozen=True)
class BackupPolicy:
    """When a datastore is backed up and how long backups are kept (the ``backups`` extension
    of shipyard.yaml; these defaults otherwise)."""

    schedule: str = DEFAULT_BACKUP_SCHEDULE  # cron, UTC: full/differential backups
    retention_days: int = 30  # backups kept this long
    pitr_retention_days: int = 7  # point-in-time recovery possible this far back (Postgres)
    drill_schedule: str = DEFAULT_DRILL_SCHEDULE  # restore drills (Postgres)
    offsite: bool = True  # also to the S3 repository, when one is configured


@dataclass(frozen=True)
class AllowedSource:
    """An ipAllowList entry: a CIDR block (normalized) and its description."""

    cidr: str
    description: str = ""


@dataclass(frozen=True)
class DatastoreSpec:
    """A PostgreSQL database (``databases:``) or a Key Value instance (``type: keyvalue``),
    normalized. Databases and Key Value share one namespace in Shipyard: `shipyard db NAME`
    addresses either."""

    name: str
    kind: str  # "postgres" | "keyvalue"
    plan: str | None = None
    ip_allow_list: tuple[AllowedSource, ...] = ()  # () = internal only (loopback)
    backups: BackupPolicy = BackupPolicy()
    # postgres
    database_name: str = ""
    user: str = ""
    version: str | None = None  # postgresMajorVersion; None = the newest installed
    disk_size_gb: int | None = None
    read_replicas: tuple[str, ...] = ()
    primary: str | None = None  # set on a read replica: the database it follows
    # keyvalue
    maxmemory_policy: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatastoreSpec:
        return _DATASTORE.validate_python(json.loads(text))

    def config_digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


_DATASTORE: TypeAdapter[DatastoreSpec] = TypeAdapter(DatastoreSpec)
