"""Plan: what a deploy of this Blueprint would change (pure: Blueprint x State -> Plan)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from shipyard.blueprint.spec import DatastoreSpec, ServiceSpec

Action = Literal["create", "update", "redeploy"]
# Fields a person recognises, in Blueprint spelling, for "what changed".
FIELD_NAMES = {
    "type": "type",
    "runtime": "runtime",
    "root_dir": "rootDir",
    "build_command": "buildCommand",
    "start_command": "startCommand",
    "pre_deploy_command": "preDeployCommand",
    "health_check_path": "healthCheckPath",
    "num_instances": "numInstances",
    "max_shutdown_delay_seconds": "maxShutdownDelaySeconds",
    "env_vars": "envVars",
    "env_digests": "envVars",
    "domains": "domains",
    "health_check_timeout_seconds": "healthCheckTimeoutSeconds",
    "drain_timeout_seconds": "drainTimeoutSeconds",
    "backup_before_deploy": "backupBeforeDeploy",
    "disk": "disk",
    "schedule": "schedule",
    "max_run_seconds": "maxRunSeconds",
}


@dataclass(frozen=True)
class PlanStep:
    service: str
    type: str
    action: Action
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    steps: tuple[PlanStep, ...]
    orphans: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)
    datastores: DatastorePlan = field(default_factory=lambda: DatastorePlan())


def make_plan(
    services: Sequence[ServiceSpec],
    specs: Mapping[str, ServiceSpec],
    live_specs: Mapping[str, ServiceSpec],
    known_types: Mapping[str, str],
    blueprint_services: Sequence[str] = (),
) -> Plan:
    """Compare the Blueprint's services with the live spec of each deployed service.

    ``specs``: service -> the stored (redacted) form of the Blueprint's spec;
    ``live_specs``: service -> the stored spec of its live release; ``known_types``: every
    service in state -> its type; ``blueprint_services``: services previously deployed from
    this Blueprint (those missing now are orphans: kept running, reported).
    """
    steps = []
    problems = []
    for spec in services:
        new = specs[spec.name]
        old_type = known_types.get(spec.name)
        if old_type is not None and old_type != spec.type:
            problems.append(
                f"service {spec.name!r} is a {old_type} in Shipyard and a {spec.type} in the "
                f"Blueprint; changing a service's type is not possible: rename it instead"
            )
            continue
        old = live_specs.get(spec.name)
        if old is None:
            steps.append(PlanStep(spec.name, spec.type, "create"))
            continue
        changed = tuple(
            sorted(
                {
                    FIELD_NAMES.get(f.name, f.name)
                    for f in fields(ServiceSpec)
                    if getattr(new, f.name) != getattr(old, f.name)
                }
            )
        )
        steps.append(PlanStep(spec.name, spec.type, "update" if changed else "redeploy", changed))
    wanted = {s.name for s in services}
    orphans = tuple(sorted(n for n in blueprint_services if n not in wanted))
    return Plan(steps=tuple(steps), orphans=orphans, problems=tuple(problems))


# --- datastores -------------------------------------------------------------------------------

DatastoreAction = Literal["create", "update", "unchanged"]
# What can change on a datastore after it is created, in Blueprint spelling.
DATASTORE_FIELDS = {
    "plan": "plan",
    "ip_allow_list": "ipAllowList",
    "backups": "backups",
    "maxmemory_policy": "maxmemoryPolicy",
    "disk_size_gb": "diskSizeGB",
    "read_replicas": "readReplicas",
}
# ... and what cannot (Render fixes them at creation too).
DATASTORE_FIXED = {"kind": "type", "database_name": "databaseName", "user": "user",
                   "primary": "primary"}  # fmt: skip
RESTART_FIELDS = frozenset({"plan", "ipAllowList", "maxmemoryPolicy"})


@dataclass(frozen=True)
class DatastoreStep:
    name: str
    kind: str
    action: DatastoreAction
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatastorePlan:
    steps: tuple[DatastoreStep, ...] = ()
    kept: tuple[str, ...] = ()  # declared by this Blueprint before, absent now: kept
    problems: tuple[str, ...] = ()


def datastore_changes(new: DatastoreSpec, old: DatastoreSpec) -> tuple[str, ...]:
    return tuple(name for f, name in DATASTORE_FIELDS.items() if getattr(new, f) != getattr(old, f))


def datastore_problems(new: DatastoreSpec, old: DatastoreSpec, old_version: str) -> list[str]:
    what = "Key Value" if old.kind == "keyvalue" else "database"
    problems = [
        f"{what} '{new.name}': {name} is {getattr(old, f)!r} in Shipyard and "
        f"{getattr(new, f)!r} in the Blueprint; it cannot change once created (restore into "
        "a new database with `shipyard db restore --as` instead)"
        for f, name in DATASTORE_FIXED.items()
        if getattr(new, f) != getattr(old, f)
    ]
    if new.kind == old.kind == "postgres" and new.version not in (None, old_version):
        problems.append(
            f"database '{new.name}': postgresMajorVersion is {old_version} in Shipyard and "
            f"{new.version} in the Blueprint; a major upgrade in place is not supported yet: "
            "restore into a new database instead"
        )
    return problems


def plan_datastores(
    specs: Sequence[DatastoreSpec],
    existing: Mapping[str, tuple[DatastoreSpec, str]],
    declared_here: Sequence[str] = (),
) -> DatastorePlan:
    """``existing``: datastore -> (its spec, its version); ``declared_here``: datastores this
    Blueprint declared before (those missing now are kept, never deleted)."""
    steps, problems = [], []
    for spec in specs:
        found = existing.get(spec.name)
        if found is None:
            steps.append(DatastoreStep(spec.name, spec.kind, "create"))
            continue
        old, version = found
        problems += datastore_problems(spec, old, version)
        changed = datastore_changes(spec, old)
        steps.append(
            DatastoreStep(spec.name, spec.kind, "update" if changed else "unchanged", changed)
        )
    wanted = {s.name for s in specs}
    kept = tuple(sorted(n for n in declared_here if n not in wanted))
    return DatastorePlan(tuple(steps), kept, tuple(problems))
