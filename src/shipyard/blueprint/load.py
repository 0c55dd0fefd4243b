"""Load a Blueprint file: YAML (with positions) -> strict model -> checks -> ``LoadedBlueprint``.

Every problem found is collected and reported at once, each as ``file:line:col: path: message``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeGuard

from pydantic import ValidationError

from shipyard.blueprint import refs
from shipyard.blueprint.limits import DEFAULT_LIMITS, BlueprintLimits
from shipyard.blueprint.model import (
    NATIVE_RUNTIMES,
    Backups,
    Blueprint,
    CronService,
    Database,
    Environment,
    EnvVar,
    EnvVarGroup,
    GroupEnvVar,
    IpAllow,
    KeyValueService,
    PrivateService,
    Resources,
    WebService,
    WorkerService,
)
from shipyard.blueprint.positions import NotYaml, Problems, compose, file_error, limit_error
from shipyard.blueprint.scalars import RESERVED_ROLES, Loc, Positions, format_path
from shipyard.blueprint.schema import did_you_mean, explain
from shipyard.blueprint.spec import (
    AllowedSource,
    BackupPolicy,
    DatastoreSpec,
    DiskSpec,
    EnvVarSpec,
    FromService,
    ServiceSpec,
)
from shipyard.errors import BlueprintError

Kind = Literal["render", "shipyard"]
SHIPYARD_NAMES = ("shipyard.yaml", "shipyard.yml")
RENDER_NAMES = ("render.yaml", "render.yml")


@dataclass(frozen=True)
class Notice:
    """A field accepted but not acted on."""

    location: str  # "render.yaml:12:5"
    path: str  # "services[1].scaling"
    message: str


@dataclass(frozen=True)
class LoadedBlueprint:
    path: Path
    root: Path  # directory holding the file: the repository root (rootDir is relative to it)
    kind: Kind
    services: tuple[ServiceSpec, ...]  # only the services Shipyard runs now, in file order
    groups: Mapping[str, tuple[EnvVarSpec, ...]]  # envVarGroups by name
    notices: tuple[Notice, ...]
    # PostgreSQL databases (primaries, then each one's read replicas) and Key Value instances
    datastores: tuple[DatastoreSpec, ...] = ()

    def datastore(self, name: str) -> DatastoreSpec | None:
        return next((d for d in self.datastores if d.name == name), None)

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        names = [spec.name for spec in self.services]
        raise BlueprintError(
            f"{self.path.name}: no service '{name}'{did_you_mean(name, names)} "
            f"(services: {', '.join(names) or 'none'})",
            fields={"service": name, "services": names},
        )


# --- public API -----------------------------------------------------------------------------


def find_blueprint(directory: Path) -> Path:
    """The Blueprint in ``directory``: shipyard.yaml/.yml preferred, else render.yaml/.yml."""
    for name in SHIPYARD_NAMES + RENDER_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise BlueprintError(
        f"no Blueprint in {directory}: expected one of {', '.join(SHIPYARD_NAMES + RENDER_NAMES)}",
        fields={"directory": str(directory)},
    )


def load_blueprint(path: Path, limits: BlueprintLimits = DEFAULT_LIMITS) -> LoadedBlueprint:
    kind: Kind = "shipyard" if path.name in SHIPYARD_NAMES else "render"
    text = _read(path, limits)
    loaded = parse_blueprint(text, filename=path.name, kind=kind, limits=limits)
    return LoadedBlueprint(
        path=path,
        root=path.parent,
        kind=kind,
        services=loaded.services,
        groups=loaded.groups,
        notices=loaded.notices,
        datastores=loaded.datastores,
    )


def parse_blueprint(
    text: str, *, filename: str, kind: Kind, limits: BlueprintLimits = DEFAULT_LIMITS
) -> LoadedBlueprint:
    """Parse and validate Blueprint text; raise one BlueprintError listing every problem.

    A text over ``limits`` is refused before it is parsed (size) or while it is (nesting,
    nodes). A text that is not a Blueprint is refused without quoting any of it: it may be any
    file the caller can name, and the error may travel further than the file."""
    # Every character is at least a byte: a text longer than the limit is refused uncounted.
    size = len(text) if len(text) > limits.max_bytes else len(text.encode(errors="surrogatepass"))
    if size > limits.max_bytes:
        message, fields = limits.breach("max_bytes", size)
        raise limit_error(filename, message, **fields)
    problems = Problems(filename)
    data, positions = _compose(text, problems, limits)
    problems.positions = positions
    model: Blueprint | None = None
    try:
        model = Blueprint.model_validate(data)
    except ValidationError as exc:
        for loc, message in explain(exc, data):
            problems.add_at(loc, message)
    for loc, message in refs.check(data, kind, positions):
        problems.add_at(loc, message)
    for loc, message in refs.check_projects(data, kind, positions):
        problems.add_at(loc, message)
    problems.raise_if_any()
    assert model is not None  # validation succeeded: no problems were recorded
    services, datastores, groups = _resources(model)
    ordered = sorted(_all_notices(data), key=lambda notice: problems.position(notice[0]))
    notices = tuple(
        Notice(location=problems.where(loc), path=format_path(loc), message=message)
        for loc, message in ordered
    )
    path = Path(filename)
    return LoadedBlueprint(
        path=path,
        root=path.parent,
        kind=kind,
        services=services,
        groups=MappingProxyType(groups),
        notices=notices,
        datastores=datastores,
    )


def _read(path: Path, limits: BlueprintLimits) -> str:
    """The text of the file at ``path``, of which at most ``limits.max_bytes`` + 1 bytes are
    read. Only a regular file is read: a FIFO or a device could block or never end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with open(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BlueprintError(
                    f"cannot read {path}: not a regular file", fields={"path": str(path)}
                )
            data = file.read(limits.max_bytes + 1)
    except OSError as exc:
        raise BlueprintError(
            f"cannot read {path}: {exc.strerror}", fields={"path": str(path)}
        ) from exc
    if len(data) > limits.max_bytes:
        message, fields = limits.breach("max_bytes", max(info.st_size, len(data)))
        raise limit_error(path.name, message, **fields)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode(errors="replace")) + 1
        where = (data.count(b"\n", 0, exc.start) + 1, column)
        message = "not UTF-8 text (a Blueprint is UTF-8 YAML text)"
        raise file_error(path.name, message, where) from None


# --- is it a Blueprint? ---------------------------------------------------------------------

# The top-level keys that make a mapping a Blueprint (`version` alone does not: many YAML files
# have one).
TOP_KEYS = (
    "services",
    "databases",
    "envVarGroups",
    "previews",
    "previewsEnabled",
    "previewsExpireAfterDays",
    "projects",
    "ungrouped",
)
_EXPECTED = "expected a YAML mapping with 'services', 'databases' or 'envVarGroups' at the top"


def _compose(
    text: str, problems: Problems, limits: BlueprintLimits
) -> tuple[dict[str, Any], Positions]:
    """The file's data if it is a Blueprint (its YAML problems are then reported as usual);
    otherwise an error that names only what the file is not."""
    try:
        data, positions = compose(text, problems, limits)
    except NotYaml as failure:
        if not _is_blueprint(failure.top_keys):
            found = "text that is not YAML"
            raise _not_a_blueprint(problems.filename, found, failure.position) from None
        problems.add(failure.position, (), failure.detail)
        raise problems.error() from None
    if not isinstance(data, dict) or not _is_blueprint(data):
        raise _not_a_blueprint(problems.filename, _what(data))
    return data, positions


def _is_blueprint(keys: Collection[object]) -> bool:
    """Whether the top-level ``keys`` name a Blueprint: one of TOP_KEYS, or a likely typo of
    one (then reported as such). Only the first keys are checked for typos: difflib is slow,
    and a Blueprint has a handful of top-level keys."""
    if any(key in TOP_KEYS for key in keys):
        return True
    candidates = list(TOP_KEYS)
    return any(
        isinstance(key, str) and refs.likely_typo(key, candidates) for key in islice(keys, 20)
    )


def _not_a_blueprint(
    filename: str, found: str, position: tuple[int, int] | None = None
) -> BlueprintError:
    return file_error(filename, f"not a Blueprint ({_EXPECTED}; found {found})", position)


def _what(data: object) -> str:
    """What the file holds, in words that quote none of it."""
    if data is None:
        return "an empty file"
    if isinstance(data, dict):
        return "a mapping without any of those keys"
    if isinstance(data, list):
        return "a list"
    return "plain text" if isinstance(data, str) else "a single value"


# --- normalized specs -----------------------------------------------------------------------

Runnable = WebService | PrivateService | WorkerService | CronService


@dataclass(frozen=True)
class _Names:
    """Blueprint names -> Shipyard's names in one part of the file: at the top level (and for
    a project's own envVarGroups) the same; in an environment, its own services, datastores
    and groups get ``-<environment>`` (refs.py "projects and environments"), and a name it
    does not define is left as it is (the top level's, or one Shipyard already has)."""

    environment: str | None = None
    suffix: str = ""
    services: frozenset[str] = frozenset()
    datastores: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @classmethod
    def of(cls, env: Environment) -> _Names:
        stores = {d.name for d in env.databases}
        stores |= {r.name for d in env.databases for r in d.read_replicas or []}
        stores |= {s.name for s in env.services if isinstance(s, KeyValueService)}
        return cls(
            environment=env.name,
            suffix=f"-{refs.environment_slug(env.name)}",
            services=frozenset(s.name for s in env.services),
            datastores=frozenset(stores),
            groups=frozenset(g.name for g in env.env_var_groups),
        )

    def service(self, name: str) -> str:
        return name + self.suffix if name in self.services else name

    def datastore(self, name: str) -> str:
        return name + self.suffix if name in self.datastores else name

    def group(self, name: str) -> str:
        return name + self.suffix if name in self.groups else name


_TOP = _Names()


def _resources(
    model: Blueprint,
) -> tuple[tuple[ServiceSpec, ...], tuple[DatastoreSpec, ...], dict[str, tuple[EnvVarSpec, ...]]]:
    """The services, datastores and env groups of the whole file, each environment's renamed
    (see _Names): the rest of Shipyard sees one flat Blueprint."""
    parts: list[tuple[Resources, _Names]] = [(model, _TOP)]
    group_parts: list[tuple[list[EnvVarGroup], _Names]] = [(model.env_var_groups, _TOP)]
    for project in model.projects or []:
        group_parts.append((project.env_var_groups, _TOP))
        for env in project.environments:
            names = _Names.of(env)
            parts.append((env, names))
            group_parts.append((env.env_var_groups, names))
    services = tuple(
        _service_spec(s, names) for part, names in parts for s in part.services if _runs_now(s)
    )
    databases = [spec for part, names in parts for db in part.databases
                 for spec in _database_specs(db, names)]  # fmt: skip
    keyvalue = [_keyvalue_spec(s, names) for part, names in parts for s in part.services
                if isinstance(s, KeyValueService)]  # fmt: skip
    groups = {
        names.group(g.name): tuple(_env_spec(e, names) for e in g.env_vars)
        for entries, names in group_parts
        for g in entries
    }
    return services, (*databases, *keyvalue), groups


def _runs_now(svc: object) -> TypeGuard[Runnable]:
    """web/pserv/worker/cron on a native runtime: what Shipyard runs in this version."""
    if not isinstance(svc, Runnable):
        return False
    return (svc.runtime or svc.env) in NATIVE_RUNTIMES


def _cron_spec(svc: CronService, names: _Names) -> ServiceSpec:
    """A cron job: built and released like a service and run by the cron scheduler
    (run/cron.py); it has no instances (count 0), no port, no health check."""
    return ServiceSpec(
        name=names.service(svc.name),
        type="cron",
        runtime=str(svc.runtime or svc.env),
        root_dir=svc.root_dir or "",
        build_command=svc.build_command,
        start_command=svc.start_command or "",
        num_instances=0,
        env_vars=tuple(_env_spec(e, names) for e in svc.env_vars),
        repo=svc.repo or "",
        branch=svc.branch or "",
        auto_deploy=_auto_deploy(svc),
        build_filter_paths=tuple(svc.build_filter.paths) if svc.build_filter else (),
        build_filter_ignored=tuple(svc.build_filter.ignored_paths) if svc.build_filter else (),
        environment=names.environment,
        base_name=svc.name if names.environment is not None else None,
        schedule=svc.schedule,
        max_run_seconds=svc.max_run_seconds,
    )


def _service_spec(svc: Runnable, names: _Names = _TOP) -> ServiceSpec:
    if isinstance(svc, CronService):
        return _cron_spec(svc, names)
    domains: list[str] = []
    if isinstance(svc, WebService):
        domains = ([svc.domain] if svc.domain else []) + (svc.domains or [])
    return ServiceSpec(
        name=names.service(svc.name),
        type=svc.type,
        runtime=str(svc.runtime or svc.env),
        root_dir=svc.root_dir or "",
        build_command=svc.build_command,
        start_command=svc.start_command or "",
        pre_deploy_command=svc.pre_deploy_command,
        health_check_path=svc.health_check_path,
        num_instances=svc.num_instances,
        max_shutdown_delay_seconds=svc.max_shutdown_delay_seconds,
        env_vars=tuple(_env_spec(e, names) for e in svc.env_vars),
        domains=tuple(dict.fromkeys(domains)),
        health_check_timeout_seconds=svc.health_check_timeout_seconds,
        drain_timeout_seconds=svc.drain_timeout_seconds,
        backup_before_deploy=bool(svc.backup_before_deploy),
        disk=DiskSpec(svc.disk.name, svc.disk.mount_path, svc.disk.size_gb) if svc.disk else None,
        repo=svc.repo or "",
        branch=svc.branch or "",
        auto_deploy=_auto_deploy(svc),
        build_filter_paths=tuple(svc.build_filter.paths) if svc.build_filter else (),
        build_filter_ignored=tuple(svc.build_filter.ignored_paths) if svc.build_filter else (),
        environment=names.environment,
        base_name=svc.name if names.environment is not None else None,
    )


def _auto_deploy(svc: Runnable) -> bool:
    """autoDeployTrigger (commit and checksPass deploy, off does not), else the legacy
    autoDeploy; on by default, as on Render."""
    if svc.auto_deploy_trigger is not None:
        return svc.auto_deploy_trigger != "off"
    return svc.auto_deploy is not False


def _policy(backups: Backups | None) -> BackupPolicy:
    default = BackupPolicy()
    if backups is None:
        return default
    return BackupPolicy(
        schedule=backups.schedule or default.schedule,
        retention_days=backups.retention_days or default.retention_days,
        pitr_retention_days=backups.pitr_retention_days or default.pitr_retention_days,
        drill_schedule=backups.drill_schedule or default.drill_schedule,
        offsite=default.offsite if backups.offsite is None else backups.offsite,
    )


def _sources(entries: list[IpAllow] | None) -> tuple[AllowedSource, ...]:
    return tuple(AllowedSource(e.source, e.description or "") for e in entries or [])


def pg_identifier(name: str, suffix: str = "") -> str:
    """A lowercase SQL identifier made from a Blueprint name (Render derives the database and
    user names from the database's name when the file gives none)."""
    ident = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name.lower())
    ident = ident.strip("_") or "db"
    if ident[0].isdigit() or ident.startswith("pg_"):  # PostgreSQL reserves pg_ names
        ident = f"db_{ident}"
    if ident in RESERVED_ROLES:
        ident = f"{ident}_db"
    return ident[: 63 - len(suffix)].rstrip("_") + suffix


def _database_specs(db: Database, names: _Names = _TOP) -> list[DatastoreSpec]:
    database_name = db.database_name or pg_identifier(db.name)  # the Blueprint's name
    primary = DatastoreSpec(
        name=names.datastore(db.name),
        kind="postgres",
        plan=db.plan,
        ip_allow_list=_sources(db.ip_allow_list),
        backups=_policy(db.backups),
        database_name=database_name,
        user=db.user or pg_identifier(database_name, "_user"),
        version=db.postgres_major_version,
        disk_size_gb=db.disk_size_gb,
        read_replicas=tuple(names.datastore(r.name) for r in db.read_replicas or []),
    )
    replicas = [
        replace(primary, name=names.datastore(r.name), read_replicas=(), primary=primary.name)
        for r in db.read_replicas or []
    ]
    return [primary, *replicas]


def _keyvalue_spec(svc: KeyValueService, names: _Names = _TOP) -> DatastoreSpec:
    return DatastoreSpec(
        name=names.datastore(svc.name),
        kind="keyvalue",
        plan=svc.plan,
        ip_allow_list=_sources(svc.ip_allow_list),
        backups=_policy(svc.backups),
        maxmemory_policy=svc.maxmemory_policy,
    )


def _env_spec(item: EnvVar | GroupEnvVar, names: _Names = _TOP) -> EnvVarSpec:
    if isinstance(item, GroupEnvVar):
        return EnvVarSpec(key=item.key, value=item.value, generate=bool(item.generate_value))
    ref, db = item.from_service, item.from_database
    return EnvVarSpec(
        key=item.key,
        value=item.value,
        generate=bool(item.generate_value),
        sync=item.sync is not False,
        from_service=FromService(
            type="keyvalue" if ref.type == "redis" else ref.type,
            name=names.service(ref.name),
            property=ref.property,
            env_var_key=ref.env_var_key,
        )
        if ref
        else None,
        from_database=(names.datastore(db.name), db.property) if db else None,
        from_group=names.group(item.from_group) if item.from_group is not None else None,
    )


# --- notices --------------------------------------------------------------------------------

_NO_MEANING = {
    "plan": "ignored: Shipyard runs on one machine, there are no instance plans",
    "region": "ignored: Shipyard runs on one machine, there are no regions",
}
_NOT_YET = {
    "scaling": "autoscaling (scaling)",
    "ipAllowList": "IP allow lists (ipAllowList)",
    "initialDeployHook": "the initial deploy hook (initialDeployHook)",
    "dockerfilePath": "Docker builds (dockerfilePath)",
    "dockerContext": "Docker builds (dockerContext)",
    "dockerCommand": "Docker builds (dockerCommand)",
    "image": "prebuilt images (image)",
    "registryCredential": "prebuilt images (registryCredential)",
    "previews": "preview environments (previews)",
    "pullRequestPreviewsEnabled": "preview environments (pullRequestPreviewsEnabled)",
}
_ROOT_NOT_YET = {
    "previews": "preview environments (previews)",
    "previewsEnabled": "preview environments (previewsEnabled)",
    "previewsExpireAfterDays": "preview environments (previewsExpireAfterDays)",
    "ungrouped": "ungrouped resources (ungrouped); put services at the top level",
}


def _all_notices(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """The top level's notices, then each environment's (at their place in the file)."""
    out = _notices(data)
    projects: dict[Loc, Mapping[str, Any]] = {
        scope.loc: scope.data for scope in refs.scopes(data) if len(scope.loc) == 2
    }
    for scope in refs.scopes(data):
        if scope.environment is None:
            continue
        found = _notices(scope.data, (data, projects[scope.loc[:2]]))
        found += [((k,), m) for k, m in _ENVIRONMENT_NOTES.items() if _enabled(scope.data, k)]
        out += [((*scope.loc, *loc), message) for loc, message in found]
    return out


_ENVIRONMENT_NOTES = {
    "networking": "not supported yet: network isolation (networking.isolation) is not "
    "enforced; the services of every environment reach each other on this machine",
    "permissions": "ignored: Shipyard has no workspace roles, so environments have no "
    "protection (permissions.protection); the API token may change every environment",
}


def _enabled(env: Mapping[str, Any], key: str) -> bool:
    setting = env.get(key)
    field = "isolation" if key == "networking" else "protection"
    return isinstance(setting, dict) and setting.get(field) == "enabled"


def _notices(
    data: Mapping[str, Any], outer: tuple[Mapping[str, Any], ...] = ()
) -> list[tuple[Loc, str]]:
    """Notices of the top level, or of an environment (``data``) that also sees the names of
    ``outer`` (the top level, its project)."""
    out: list[tuple[Loc, str]] = []
    seen = (data, *outer)
    running = {s["name"] for d in seen for s in d.get("services") or [] if refs.runs(s)}
    defined = {
        section: {str(entry.get("name")) for d in seen for entry in d.get(section) or []}
        for section in ("services", "databases", "envVarGroups")
    }
    defined["databases"] |= {
        str(replica.get("name"))
        for d in seen
        for db in d.get("databases") or []
        for replica in db.get("readReplicas") or []
    }
    defined["keyvalue"] = {
        str(s.get("name"))
        for d in seen
        for s in d.get("services") or []
        if s.get("type") in ("keyvalue", "redis")
    }
    for i, svc in enumerate(data.get("services") or []):
        loc: Loc = ("services", i)
        if svc.get("type") in ("keyvalue", "redis"):
            continue
        skipped = _skipped_service(svc)
        if skipped:
            out.append((loc, f"not supported yet: {skipped} is not run in this version"))
            continue
        out += [((*loc, k), m) for k, m in _NO_MEANING.items() if k in svc]
        if svc.get("autoDeployTrigger") == "checksPass":
            out.append(
                (
                    (*loc, "autoDeployTrigger"),
                    "checksPass is treated like commit: "
                    "Shipyard has no CI integration yet, each new commit deploys",
                )
            )
        out += [
            ((*loc, k), f"not supported yet: {what} is ignored in this version")
            for k, what in _NOT_YET.items()
            if k in svc
        ]
        for j, item in enumerate(svc.get("envVars") or []):
            message = _env_notice(item, running, defined)
            if message:
                out.append(((*loc, "envVars", j), message))
    for i, db in enumerate(data.get("databases") or []):
        out += [((("databases", i, k)), m) for k, m in _DATABASE_NOTES.items() if k in db]
        if "ipAllowList" not in db:
            out.append((("databases", i), _INTERNAL_ONLY))
    for i, svc in enumerate(data.get("services") or []):
        if svc.get("type") in ("keyvalue", "redis"):
            if svc["type"] == "redis":
                out.append((("services", i, "type"), "type 'redis' is the deprecated name of "
                            "'keyvalue': it works the same"))  # fmt: skip
            out += [((("services", i, k)), m) for k, m in _KEYVALUE_NOTES.items() if k in svc]
            out += _external_access(svc.get("ipAllowList"), ("services", i, "ipAllowList"))
    out += [
        ((k,), f"not supported yet: {w} is ignored") for k, w in _ROOT_NOT_YET.items() if k in data
    ]
    return out


_ONE_MACHINE = "ignored: Shipyard runs on one machine"
_DATABASE_NOTES = {
    "region": f"{_ONE_MACHINE}, there are no regions",
    "highAvailability": f"{_ONE_MACHINE}: there is no standby to fail over to (read "
    "replicas stream on the same machine)",
    "previewPlan": "ignored: preview environments are not supported yet",
    "previewDiskSizeGB": "ignored: preview environments are not supported yet",
    "previews": "ignored: preview environments are not supported yet",
    "storageAutoscalingEnabled": "ignored: the database grows within the machine's disk; "
    "diskSizeGB is reported against its size",
}
_KEYVALUE_NOTES = {
    "region": f"{_ONE_MACHINE}, there are no regions",
    "previewPlan": "ignored: preview environments are not supported yet",
    "previews": "ignored: preview environments are not supported yet",
    "persistenceMode": "ignored: Shipyard's Key Value always persists (AOF every second plus "
    "RDB snapshots)",
}
_INTERNAL_ONLY = (
    "no ipAllowList: reachable from this machine only (Render would allow any address with "
    "the password); list sources to allow connections from elsewhere"
)


def _external_access(entries: object, loc: Loc) -> list[tuple[Loc, str]]:
    if isinstance(entries, list) and entries:
        return [
            (
                loc,
                "not supported yet: Key Value is reachable from this machine only; "
                "connections from the listed sources are refused",
            )
        ]
    return []


def _skipped_service(svc: dict[str, Any]) -> str | None:
    name = svc["name"]
    runtime = svc.get("runtime", svc.get("env"))
    if runtime == "static":
        return f"static site '{name}'"
    if runtime in ("docker", "image"):
        return f"{runtime} service '{name}' (runtime: {runtime})"
    return None


_ELSEWHERE = "is not defined in this file (on Render it must exist in the workspace)"


def _env_notice(
    item: dict[str, Any], running: set[str], defined: dict[str, set[str]]
) -> str | None:
    key = item.get("key")
    sync = item.get("sync")
    if sync is False or (isinstance(sync, str) and sync.lower() in ("no", "off")):
        return f"{key} is left unset (sync: false): its value is supplied outside the file"
    group = item.get("fromGroup")
    if isinstance(group, str) and group not in defined["envVarGroups"]:
        return f"envVarGroup '{group}' {_ELSEWHERE}: its variables are not added"
    if "fromDatabase" in item:
        db = item["fromDatabase"]["name"]
        if db not in defined["databases"]:
            return (
                f"{key}: database '{db}' is not defined in this file: it must exist in "
                "Shipyard (from another Blueprint, or `shipyard db restore --as`)"
            )
        return None
    ref = item.get("fromService")
    if ref and ref["name"] not in defined["services"]:
        return f"{key} is left unset: service '{ref['name']}' {_ELSEWHERE}"
    if ref and ref["name"] not in running and ref["name"] not in defined["keyvalue"]:
        name = ref["name"]
        return f"not supported yet: {key} (fromService '{name}') is left unset: '{name}' is not run"
    return None
