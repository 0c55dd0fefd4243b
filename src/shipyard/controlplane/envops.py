"""Environment changes of a service (`shipyard env set/unset/rotate`): recorded encrypted,
then rolled out as a new release of the live build with the new env (no rebuild)."""

from __future__ import annotations

from collections.abc import Callable

from shipyard.blueprint.refs import generate_secret
from shipyard.context import Emit
from shipyard.controlplane.engine import Engine
from shipyard.errors import Conflict, NotFound, UsageError
from shipyard.records import OperationKind, Release, ReleaseStatus, ServiceOutcome
from shipyard.release.env import blueprint_keys
from shipyard.rollout.cron import go_live
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


def set_group_env(
    engine: Engine, group: str, values: dict[str, str], unset: list[str], deploy: bool = True
) -> list[int]:
    """Record `env set/unset --group GROUP`; with ``deploy``, roll out every deployed service
    that uses the group with the new values (one operation each; a service that sets a key
    itself keeps its own value). An unset applies at each service's next deploy: the value
    it falls back to (the Blueprint's group) is resolved by a Blueprint deploy."""
    state = engine.ctx.state
    tokens = {k: engine.ctx.box.encrypt(v) for k, v in values.items()}
    state.set_env_values(f"group:{group}", tokens, unset)
    if not deploy or not values:
        return []
    ops = []
    for svc in state.services():
        uses = any(d.kind == "from_group" and d.key == group for d in svc.spec.env_digests)
        if not uses or svc.current_release is None:
            continue
        own = blueprint_keys(svc.spec) | set(state.env_values(svc.name))
        mine = {k: v for k, v in values.items() if k not in own}
        if not mine:
            continue
        deploy_id = engine.open_operation(OperationKind.DEPLOY, f"{svc.name} (env group {group})",
                                          [svc.name])  # fmt: skip
        emit = engine.emitter(deploy_id, svc.name)
        changed = ", ".join(f"{k} set (group {group})" for k in mine)
        engine.spawn_one(deploy_id, svc.name, emit,
                         _group_rollout(engine, svc.name, mine, deploy_id, emit, changed),
                         ServiceOutcome("ok"))  # fmt: skip
        ops.append(deploy_id)
    return ops


def _group_rollout(
    engine: Engine, service: str, values: dict[str, str], deploy_id: int, emit: Emit,
    changed: str,
) -> Callable[[], None]:  # fmt: skip
    return lambda: _roll_out_env(engine, service, values, [], deploy_id, emit, changed)


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
    roll_out_artifact(
        engine, service, live, env, deploy_id, emit,
        source=f"release {live.number} with {changed}",
        message=f"release {live.number}'s build with {changed} (no rebuild)",
    )  # fmt: skip


def roll_out_artifact(
    engine: Engine, service: str, built: Release, env: dict[str, str], deploy_id: int,
    emit: Emit, *, source: str, message: str, config: Release | None = None,
) -> int:  # fmt: skip
    """A new release of ``service`` that runs the artifact of ``built`` (a release of this
    service or, for `shipyard promote`, of another: no build) with ``env``, and the spec and
    config digest of ``config`` (default: ``built``), rolled out like any release (pre-deploy
    command, health gate, drain). Returns its number."""
    state = engine.ctx.state
    config = config if config is not None else built
    number = state.next_release_number(service)
    state.add_release(
        service=service, number=number, config_digest=config.config_digest,
        git_commit=built.git_commit, git_branch=built.git_branch, source=source,
        dir=built.dir, spec=config.spec, env_enc=engine.ctx.box.encrypt_env(env),
        deploy_id=deploy_id,
    )  # fmt: skip
    state.set_release_status(service, number, ReleaseStatus.BUILT)
    release = state.release(service, number)
    emit(f"release {number}: {message}", "info")
    run_pre_deploy(engine.ctx, release, emit)
    go_live(engine.ctx, release, emit, previous_status=ReleaseStatus.SUPERSEDED,
            from_blueprint=False)  # fmt: skip
    return number
