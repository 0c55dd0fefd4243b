"""Plan: what a deploy of this Blueprint would change (pure: Blueprint x State -> Plan)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from shipyard.blueprint.spec import ServiceSpec

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
