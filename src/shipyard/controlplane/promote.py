"""`shipyard promote SERVICE --from staging --to production`: the live release of a service in
one environment of a Blueprint project, rolled out in another without a build.

The new release of ``<service>-<to>`` runs the very artifact of ``<service>-<from>``'s live
release (its directory, its git commit) with the target's own configuration: the spec, config
digest and resolved env snapshot (its values, `env set` values, its datastores' connection
strings) of the target's live release. It is rolled out like any release (the target's
pre-deploy command, health gate, zero-downtime switch, drain), and rolled back like any.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.apimodels import PromoteAccepted
from shipyard.blueprint.refs import environment_slug
from shipyard.controlplane.engine import Engine
from shipyard.controlplane.envops import roll_out_artifact
from shipyard.errors import Conflict, NotFound, UsageError
from shipyard.records import OperationKind, Release, Service, ServiceOutcome
from shipyard.release.store import artifact
from shipyard.store import Store


@dataclass(frozen=True)
class Promotion:
    source: Service
    target: Service
    release: Release  # the source's live release: its artifact is promoted
    target_live: Release  # the target's live release: its spec and env are kept


def in_environment(state: Store, service: str, environment: str) -> Service:
    """The service named ``service`` in the Blueprint, in ``environment`` (its name, or the
    name's slug as in ``<service>-<slug>``). NotFound lists what is known."""
    grouped = [s for s in state.services() if s.environment is not None]
    named = [s for s in grouped if s.base_name == service]
    if not named:
        known = sorted({str(s.base_name) for s in grouped})
        raise NotFound(
            f"No service '{service}' in any environment; "
            + (f"services in environments: {', '.join(known)}." if known
               else "no service of a Blueprint project is deployed yet."),
            fields={"service": service, "services": known},
        )  # fmt: skip
    for svc in named:
        assert svc.environment is not None
        if environment in (svc.environment, environment_slug(svc.environment)):
            return svc
    environments = sorted(str(s.environment) for s in named)
    raise NotFound(
        f"Service '{service}' has no environment '{environment}'; it is in: "
        f"{', '.join(environments)}.",
        fields={"service": service, "environment": environment, "environments": environments},
    )


def check_promotion(state: Store, service: str, source_env: str, target_env: str) -> Promotion:
    """Everything that makes the promotion impossible, found before anything is recorded."""
    source = in_environment(state, service, source_env)
    target = in_environment(state, service, target_env)
    if source.name == target.name:
        raise UsageError(
            f"--from and --to both name {source.name}: promote between two environments."
        )
    if source.current_release is None:
        raise Conflict(
            f"{source.name} has no live release to promote; deploy it first.",
            fields={"service": source.name},
        )
    if target.current_release is None:
        raise Conflict(
            f"{target.name} has no live release yet: deploy the Blueprint to {target_env} "
            "first (a promotion runs with the target's own env, which its deploy resolves).",
            fields={"service": target.name},
        )
    differences = [
        f"{what} {a} in {source.environment} but {b} in {target.environment}"
        for what, a, b in (
            ("type", source.type, target.type),
            ("runtime", source.spec.runtime, target.spec.runtime),
        )
        if a != b
    ]
    if differences:
        raise Conflict(
            f"Cannot promote {source.name} to {target.name}: " + "; ".join(differences) + ".",
            fields={"source": source.name, "target": target.name, "differences": differences},
        )
    release = state.release(source.name, source.current_release)
    if not artifact(release).app.is_dir():
        raise Conflict(
            f"Release {release.number} of {source.name} cannot be promoted: its artifact "
            f"{artifact(release).app} is missing.",
            fields={"service": source.name, "release": release.number},
        )
    target_live = state.release(target.name, target.current_release)
    return Promotion(source, target, release, target_live)


def promote(engine: Engine, service: str, source_env: str, target_env: str) -> PromoteAccepted:
    """Record and start the promotion (an operation of the target service, like a deploy)."""
    state = engine.ctx.state
    check_promotion(state, service, source_env, target_env)  # bad input changes nothing
    first = in_environment(state, service, target_env)
    deploy_id = engine.open_operation(
        OperationKind.DEPLOY, f"{first.name} (promote from {source_env})", [first.name]
    )
    try:  # again under the claim: the target may have changed meanwhile
        found = check_promotion(state, service, source_env, target_env)
    except BaseException:
        engine.free_claims([first.name], deploy_id)
        raise
    name, built = found.target.name, found.release
    emit = engine.emitter(deploy_id, name)
    emit(
        f"promoting {found.source.name} release {built.number} to {name} (no rebuild), with "
        f"{name}'s env of release {found.target_live.number}",
        "info",
    )
    engine.spawn_one(
        deploy_id, name, emit,
        lambda: _roll_out(engine, found, deploy_id),
        ServiceOutcome("ok"),
    )  # fmt: skip
    return PromoteAccepted(
        id=deploy_id,
        service=service,
        source=found.source.name,
        target=name,
        release=built.number,
        from_environment=str(found.source.environment),
        to_environment=str(found.target.environment),
    )


def _roll_out(engine: Engine, found: Promotion, deploy_id: int) -> None:
    name, built, live = found.target.name, found.release, found.target_live
    env = engine.ctx.box.decrypt_env(live.env_enc)
    roll_out_artifact(
        engine, name, built, env, deploy_id, engine.emitter(deploy_id, name),
        source=f"promoted from {found.source.name} release {built.number}",
        message=f"{found.source.name} release {built.number}'s build (promoted, no rebuild) "
        f"with the env of {name} release {live.number}",
        config=live,
    )  # fmt: skip
