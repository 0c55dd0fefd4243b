"""A release's environment: its env snapshot (refs resolved, generated values kept stable and
encrypted), Render's platform variables, and the runtime environment of its pre-deploy
command and instances (built from scratch, see builds/environment.py)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from shipyard.blueprint.load import LoadedBlueprint
from shipyard.blueprint.refs import Endpoint, resolve_env
from shipyard.blueprint.spec import ServiceSpec
from shipyard.builds.environment import compose_env, release_toolchain
from shipyard.context import Context, Emit
from shipyard.data import lifecycle
from shipyard.records import Release, Service
from shipyard.release.store import artifact, service_paths

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
        spec, groups=loaded.groups, endpoints=endpoints, service_env=service_env,
        generated=previous, datastores=lifecycle.connections(ctx),
    )  # fmt: skip
    operator = operator_values(ctx, spec)
    fixed = blueprint_keys(spec)
    result.values.update({k: v for k, v in operator.items() if k not in fixed})
    unset = [u for u in result.unset if u.split(":", 1)[0] not in operator]
    result = replace(result, unset=tuple(unset))
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


def operator_values(ctx: Context, spec: ServiceSpec) -> dict[str, str]:
    """Values set with `shipyard env set` for ``spec``: those of its env groups first, its own
    override them."""
    values: dict[str, str] = {}
    for entry in spec.env_vars:
        if entry.from_group is not None:
            values.update(_decrypted(ctx, f"group:{entry.from_group}"))
    values.update(_decrypted(ctx, spec.name))
    return values


def _decrypted(ctx: Context, scope: str) -> dict[str, str]:
    return {k: ctx.box.decrypt(v) for k, v in ctx.state.env_values(scope).items()}


def blueprint_keys(spec: ServiceSpec) -> set[str]:
    """Keys the service's own Blueprint entries give a value (value, generateValue, from*):
    `env set` cannot override them (the next Blueprint deploy would put them back)."""
    own = {str(e.key) for e in spec.env_vars if e.key and e.sync and e.from_group is None}
    own |= {d.key for d in spec.env_digests if d.kind not in ("sync", "from_group")}
    return own


def missing_sync_keys(ctx: Context, spec: ServiceSpec) -> list[str]:
    """``sync: false`` keys of ``spec`` that no `shipyard env set` supplied."""
    supplied = operator_values(ctx, spec)
    return [str(e.key) for e in spec.env_vars if not e.sync and e.key and e.key not in supplied]


def platform_env(ctx: Context, svc: Service, release: Release) -> dict[str, str]:
    """Render's platform variables (REFERENCE: apps gate behaviour on them)."""
    name = svc.name
    host = ctx.settings.external_host(svc.type, name)
    env = {
        "RENDER": "true",
        "IS_PULL_REQUEST": "false",
        "RENDER_SERVICE_NAME": name,
        "RENDER_SERVICE_TYPE": svc.type,
        "RENDER_GIT_COMMIT": release.git_commit,
        "RENDER_GIT_BRANCH": release.git_branch,
        "RENDER_EXTERNAL_HOSTNAME": host,
        # Render's ids look like srv-<20 chars>; a stable one of the same shape per service
        "RENDER_SERVICE_ID": "srv-" + hashlib.sha256(name.encode()).hexdigest()[:20],
        "RENDER_CPU_COUNT": str(os.cpu_count() or 1),
        # private services are reached by name through fromService; no discovery DNS here
        "RENDER_DISCOVERY_SERVICE": name,
    }
    if release.source and "/" in release.source and "@" in release.source:
        slug = release.source.split("@")[0].rstrip("/").removesuffix(".git").split("/")[-2:]
        env["RENDER_GIT_REPO_SLUG"] = "/".join(slug)
    if svc.type == "web":
        env["RENDER_EXTERNAL_URL"] = ctx.settings.public_url(name)
    return env


def runtime_env(
    ctx: Context, svc: Service, release: Release, platform: dict[str, str]
) -> dict[str, str]:
    """The environment of a pre-deploy command or an instance of ``release``: built from
    scratch, the service's runtime HOME, the release's own toolchain (a Python release's
    virtualenv), its env snapshot and the platform variables."""
    paths = service_paths(ctx.settings.services_dir, svc.name).ensure()
    venv = artifact(release).venv
    return compose_env(
        host=ctx.settings.host,
        home=paths.home,
        tmp=paths.tmp,
        toolchain=release_toolchain(release.spec.runtime, venv, ctx.settings.host),
        service_env=ctx.box.decrypt_env(release.env_enc),
        platform_env={**platform_env(ctx, svc, release), **platform},
    )
