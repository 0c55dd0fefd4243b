"""Environment changes of a service (`shipyard env set/unset/rotate`): recorded encrypted,
then rolled out as a new release of the live build with the new env (no rebuild)."""

from __future__ import annotations

from shipyard.blueprint.refs import generate_secret
from shipyard.context import Emit
from shipyard.controlplane.engine import Engine
from shipyard.errors import Conflict, NotFound, UsageError
from shipyard.records import OperationKind, ReleaseStatus, ServiceOutcome
from shipyard.release.env import blueprint_keys
from shipyard.rollout.execute import rollout
from shipyard.rollout.predeploy import run_pre_deploy


def set_env(
    engine: Engine, service: str, values: dict[str, str], unset: list[str], deploy: bool = True
) -> int | None:
    """Record `env set` / `env unset` of ``service`` (which may not exist yet: the way to
    supply a sync: false key a deploy refused); with ``deploy``, roll out a new release of
    the live artifact with the new env. The operation id, or None when nothing rolls out."""
    svc = engine.ctx.state.find_service(service)
    if svc is not None:
        fixed = sorted(blueprint_keys(svc.spec) & (set(values) | set(unset)))
        if fixed:
            raise UsageError(
                f"{', '.join(fixed)} of {service} {'is' if len(fixed) == 1 else 'are'} set "
                "by its Blueprint: change the Blueprint (a value set here would be "
                "replaced at its next deploy).",
                fields={"service": service, "keys": fixed},
            )
    missing = [k for k in unset if k not in engine.ctx.state.env_values(service)]
    if missing:
        raise NotFound(f"{service} has no value set for {', '.join(missing)}.",
                       fields={"service": service, "keys": missing})  # fmt: skip
    if not deploy or svc is None or svc.current_release is None:
        _record_env(engine, service, values, unset)
        return None
    deploy_id = engine.open_operation(OperationKind.DEPLOY, f"{service} (env)", [service])
    try:
        _record_env(engine, service, values, unset)
    except BaseException:
        engine.free_claims([service], deploy_id)
        raise
    emit = engine.emitter(deploy_id, service)
    changed = ", ".join([*(f"{k} set" for k in values), *(f"{k} unset" for k in unset)])
    engine.spawn_one(
        deploy_id, service, emit,
        lambda: _roll_out_env(engine, service, values, unset, deploy_id, emit, changed),
        ServiceOutcome("ok"),
    )  # fmt: skip
    return deploy_id


def rotate_env(engine: Engine, service: str, key: str) -> int:
    """A new value for a generateValue key of ``service``, rolled out as a new release of
    the live build (the next Blueprint deploys keep it). The operation id."""
    svc = engine.ctx.state.service(service)
    generated = {d.key for d in svc.spec.env_digests if d.kind == "generate"}
    if key not in generated:
        raise UsageError(
            f"{key} is not a generateValue variable of {service}"
            + (f" (those are: {', '.join(sorted(generated))})" if generated else ""),
            fields={"service": service, "key": key},
        )
    if svc.current_release is None:
        raise Conflict(f"{service} has no live release yet; deploy it first.")
    deploy_id = engine.open_operation(OperationKind.DEPLOY, f"{service} (rotate {key})", [service])
    value = generate_secret()
    try:
        engine.ctx.state.replace_generated(service, key, engine.ctx.box.encrypt(value))
    except BaseException:
        engine.free_claims([service], deploy_id)
        raise
    emit = engine.emitter(deploy_id, service)
    engine.spawn_one(
        deploy_id, service, emit,
        lambda: _roll_out_env(engine, service, {key: value}, [], deploy_id, emit,
                                   f"{key} rotated"),
        ServiceOutcome("ok"),
    )  # fmt: skip
    return deploy_id


def _record_env(engine: Engine, service: str, values: dict[str, str], unset: list[str]) -> None:
    encrypted = {k: engine.ctx.box.encrypt(v) for k, v in values.items()}
    engine.ctx.state.set_env_values(service, encrypted, unset)


def _roll_out_env(
    engine: Engine, service: str, values: dict[str, str], unset: list[str], deploy_id: int,
    emit: Emit, changed: str,
) -> None:  # fmt: skip
    """A new release of the live artifact (no rebuild) with the env changed, rolled out
    like any release (pre-deploy command, health gate, drain)."""
    svc = engine.ctx.state.service(service)
    assert svc.current_release is not None
    live = engine.ctx.state.release(service, svc.current_release)
    env = engine.ctx.box.decrypt_env(live.env_enc)
    env.update(values)
    for key in unset:
        env.pop(key, None)
    number = engine.ctx.state.next_release_number(service)
    engine.ctx.state.add_release(
        service=service, number=number, config_digest=live.config_digest,
        git_commit=live.git_commit, git_branch=live.git_branch,
        source=f"release {live.number} with {changed}", dir=live.dir, spec=live.spec,
        env_enc=engine.ctx.box.encrypt_env(env), deploy_id=deploy_id,
    )  # fmt: skip
    engine.ctx.state.set_release_status(service, number, ReleaseStatus.BUILT)
    release = engine.ctx.state.release(service, number)
    emit(f"release {number}: release {live.number}'s build with {changed} (no rebuild)",
         "info")  # fmt: skip
    run_pre_deploy(engine.ctx, release, emit)
    rollout(engine.ctx, release, emit, previous_status=ReleaseStatus.SUPERSEDED,
            from_blueprint=False)  # fmt: skip
