"""Resolve a service's env for a new release: refs, stable generated values (encrypted)."""

from __future__ import annotations

from shipyard.blueprint.load import LoadedBlueprint
from shipyard.blueprint.refs import Endpoint, resolve_env
from shipyard.blueprint.spec import ServiceSpec
from shipyard.controlplane.context import Context, Emit

GROUP_OWNER = ""  # generated values of env groups are shared by every service using the group


def resolve_service_env(
    ctx: Context,
    loaded: LoadedBlueprint,
    spec: ServiceSpec,
    resolved: dict[str, dict[str, str]],
    emit: Emit,
) -> dict[str, str]:
    endpoints = {
        svc.name: Endpoint("127.0.0.1", int(svc.internal_port))
        for svc in ctx.state.services()
        if svc.internal_port is not None
    }
    service_env: dict[str, dict[str, str]] = {}
    for svc in ctx.state.services():
        if svc.current_release is not None:
            release = ctx.state.release(svc.name, svc.current_release)
            service_env[svc.name] = ctx.box.decrypt_env(release.env_enc)
    service_env.update(resolved)
    own = ctx.state.generated_values(spec.name)
    shared = ctx.state.generated_values(GROUP_OWNER)
    previous = {k: ctx.box.decrypt(v) for k, v in {**own, **shared}.items()}
    result = resolve_env(
        spec, groups=loaded.groups, endpoints=endpoints, service_env=service_env, generated=previous
    )
    new_own = {
        k: ctx.box.encrypt(v)
        for k, v in result.generated.items()
        if k not in previous and not k.startswith("group:")
    }
    new_shared = {
        k: ctx.box.encrypt(v)
        for k, v in result.generated.items()
        if k not in previous and k.startswith("group:")
    }
    ctx.state.save_generated(spec.name, new_own)
    ctx.state.save_generated(GROUP_OWNER, new_shared)
    for item in result.unset:
        emit(f"env var left unset: {item}", "warning")
    if "PORT" in result.values:
        # Each instance gets its own free port (several instances cannot share one); apps that
        # listen on a fixed port anyway are detected and routed to it.
        emit(
            "PORT from the Blueprint is replaced by the port Shipyard assigns to each instance",
            "warning",
        )
    return result.values
