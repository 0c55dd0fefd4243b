"""One service's deploy: build -> release -> pre-deploy -> rollout (health-gated, drained).

Invariant 3: a failed build, pre-deploy command, start or health check leaves the current
release serving — new instances are never routed before they pass their own health check, and
old ones are drained only after the new ones are UP in HAProxy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from shipyard.blueprint.spec import ServiceSpec
from shipyard.builds.builder import run_logged
from shipyard.builds.environment import compose_env, release_toolchain
from shipyard.builds.python import create_venv
from shipyard.controlplane.context import Context, Emit
from shipyard.controlplane.instances import (
    abandon,
    drain_and_stop,
    platform_env,
    runtime_env,
    start_many,
    sync_quietly,
    wait_edge_up,
    wait_healthy,
)
from shipyard.controlplane.routing import sync_routes
from shipyard.errors import BuildFailed, DeployFailed, EdgeError, ShipyardError
from shipyard.records import (
    OF_RELEASE,
    UNFINISHED_RELEASE,
    Instance,
    InstanceState,
    Release,
    ReleaseStatus,
    Service,
)
from shipyard.release.retention import releases_to_prune
from shipyard.release.store import release_paths, service_paths
from shipyard.source.snapshot import GitInfo, copy_tree

PRE_DEPLOY_TIMEOUT_S = 1800.0
# Set in the env of build and pre-deploy commands, so a restarted daemon can find and stop
# commands its predecessor started (their pids are never recorded).
RELEASE_MARKER = "SHIPYARD_RELEASE"


def release_marker(service: str, number: int) -> str:
    return f"{service}/{number}"


@dataclass(frozen=True)
class BuildRequest:
    service: str
    spec: ServiceSpec  # the stored (redacted) spec
    config_digest: str
    env: dict[str, str]  # resolved service env (secret)
    source_root: Path
    source_label: str
    git: GitInfo


def build_release(ctx: Context, deploy_id: int, req: BuildRequest, emit: Emit) -> Release:
    """Create release N, copy the source, run the build. Returns the release."""
    number = ctx.state.next_release_number(req.service)
    paths = release_paths(ctx.settings.services_dir, req.service, number)
    release = ctx.state.add_release(
        service=req.service,
        number=number,
        config_digest=req.config_digest,
        git_commit=req.git.commit,
        git_branch=req.git.branch,
        source=req.source_label,
        dir=str(paths.dir),
        spec=req.spec,
        env_enc=ctx.box.encrypt_env(req.env),
        deploy_id=deploy_id,
    )
    failed = ReleaseStatus.BUILD_FAILED
    emit(f"release {number}: copying source from {req.source_label}", "info")
    paths.dir.mkdir(parents=True, exist_ok=True)
    copy_tree(req.source_root, paths.app, exclude=ctx.settings.home)
    workdir = paths.workdir(req.spec.root_dir)
    if not workdir.is_dir():
        reason = f"rootDir {req.spec.root_dir!r} does not exist in {req.source_label}"
        ctx.state.set_release_status(req.service, number, failed, reason)
        raise BuildFailed(f"{req.service}: {reason}", fields={"service": req.service})
    runtime = req.spec.runtime
    if runtime == "python":
        emit(f"release {number}: creating its virtualenv", "info")
        try:
            create_venv(paths.venv, ctx.settings.python_bin, ctx.settings.toolchains_dir)
        except BuildFailed as exc:
            ctx.state.set_release_status(req.service, number, failed, exc.message)
            raise
    command = req.spec.build_command
    if command:
        emit(f"release {number}: building ({command})", "info")
        svc = ctx.state.service(req.service)
        home = service_paths(ctx.settings.services_dir, req.service).ensure()
        env = compose_env(
            host=ctx.settings.host,
            home=home.build_home,
            tmp=home.build_tmp,
            toolchain=release_toolchain(runtime, paths.venv, ctx.settings.host),
            service_env=req.env,
            platform_env={
                **platform_env(ctx, svc, release),
                "CI": "true",
                RELEASE_MARKER: release_marker(req.service, number),
            },
        )
        result = run_logged(
            ctx.runtime,
            label="build",
            command=command,
            cwd=workdir,
            env=env,
            log_path=paths.build_log,
            timeout_s=ctx.settings.build_timeout_s,
        )
        if not result.ok:
            reason = f"build command exited with code {result.exit_code}"
            ctx.state.set_release_status(req.service, number, failed, reason)
            raise BuildFailed(
                f"{req.service}: {reason}; the current release keeps serving.\n"
                + _indent(result.log_tail)
                + f"\n  (full log: shipyard logs {req.service} --build)",
                fields={"service": req.service, "release": number},
            )
    else:
        paths.build_log.write_text("==> no buildCommand\n")
    ctx.state.set_release_status(req.service, number, ReleaseStatus.BUILT)
    emit(f"release {number}: build succeeded", "info")
    return ctx.state.release(req.service, number)


def run_pre_deploy(ctx: Context, release: Release, emit: Emit) -> None:
    name, number = release.service, release.number
    command = release.spec.pre_deploy_command
    if not command:
        ctx.state.mark_deployable(name, number)
        return
    paths = release_paths(ctx.settings.services_dir, name, number)
    emit(f"release {number}: running preDeployCommand ({command})", "info")
    svc = ctx.state.service(name)
    env = runtime_env(ctx, svc, release, {RELEASE_MARKER: release_marker(name, number)})
    result = run_logged(
        ctx.runtime,
        label="pre-deploy",
        command=command,
        cwd=paths.workdir(release.spec.root_dir),
        env=env,
        log_path=paths.build_log,
        timeout_s=PRE_DEPLOY_TIMEOUT_S,
    )
    if not result.ok:
        reason = f"preDeployCommand exited with code {result.exit_code}"
        ctx.state.set_release_status(name, number, ReleaseStatus.FAILED, reason)
        raise DeployFailed(
            f"{name}: {reason}; the deploy was cancelled and the current release "
            "keeps serving.\n" + _indent(result.log_tail),
            fields={"service": name, "release": number},
        )
    ctx.state.mark_deployable(name, number)


def target_count(svc: Service, spec: ServiceSpec, from_blueprint: bool) -> int:
    """Instances the new release runs: the Blueprint's numInstances when it is new or changed,
    otherwise the current (possibly manually scaled) count."""
    wanted = spec.num_instances
    if from_blueprint and (svc.current_release is None or wanted != svc.blueprint_instances):
        return wanted
    return max(1, svc.desired_instances)


def rollout(
    ctx: Context, release: Release, emit: Emit, *, previous_status: ReleaseStatus,
    from_blueprint: bool,
) -> None:  # fmt: skip
    """Start the new instances beside the old, switch traffic, drain and stop the old ones."""
    name, number = release.service, release.number
    svc = ctx.state.service(name)  # as live: restored as-is if the switch fails
    spec = release.spec
    desired = target_count(svc, spec, from_blueprint)
    old = ctx.state.instances(name, states=OF_RELEASE)
    ctx.state.set_release_status(name, number, ReleaseStatus.DEPLOYING)
    emit(f"release {number}: starting {desired} instance(s) beside {len(old)} running", "info")
    new_svc = replace(svc, spec=spec)
    new = _start_all(ctx, svc, release, desired)
    failures = wait_healthy(ctx, new_svc, new, emit)
    if failures:
        abandon(ctx, new)
        reason = "; ".join(f.reason for f in failures)
        ctx.state.set_release_status(name, number, ReleaseStatus.FAILED, reason)
        raise DeployFailed(
            f"{name}: release {number} failed to start, no request reached it and the current "
            "release keeps serving:\n" + "\n".join("  " + f.describe() for f in failures),
            fields={"service": name, "release": number},
        )
    for inst in new:
        ctx.state.transition(inst.id, (InstanceState.STARTING,), state=InstanceState.RUNNING)
    ctx.state.promote(name, number, previous_status, spec, desired if from_blueprint else None)
    laggards = _switch(ctx, new_svc, new)
    if laggards:
        ctx.state.unpromote(svc, number, laggards)
        sync_quietly(ctx, emit)
        drain_and_stop(ctx, new_svc, new, emit)  # routed: drain them like any other
        for inst in new:
            ctx.state.update_instance(inst.id, state=InstanceState.FAILED)
        raise DeployFailed(
            f"{name}: {laggards}; release {number} was taken out again and the current release "
            "keeps serving.", fields={"service": name, "release": number},
        )  # fmt: skip
    if svc.type == "worker":
        emit(f"release {number}: {len(new)} instance(s) running; stopping {len(old)} old", "info")
    else:
        emit(f"release {number}: {len(new)} routed; draining {len(old)} old", "info")
    drain_and_stop(ctx, svc, old, emit)
    emit(f"release {number} is live", "info")
    prune_releases(ctx, name)


def prune_releases(ctx: Context, service: str) -> None:
    """Remove the artifacts of releases past the retention (their build logs stay)."""
    current = ctx.state.service(service).current_release
    for number in releases_to_prune(ctx.state.releases(service), current):
        ctx.state.mark_pruned(service, number)  # first: never "deployable" without an artifact
        paths = release_paths(ctx.settings.services_dir, service, number)
        shutil.rmtree(paths.app, ignore_errors=True)
        shutil.rmtree(paths.venv, ignore_errors=True)


def _start_all(ctx: Context, svc: Service, release: Release, count: int) -> list[Instance]:
    try:
        return start_many(ctx, svc, release, count)
    except ShipyardError as exc:
        ctx.state.set_release_status(svc.name, release.number, ReleaseStatus.FAILED, exc.message)
        raise DeployFailed(
            f"{svc.name}: could not start release {release.number}: "
            f"{exc.message}; the current release keeps serving."
        ) from exc


def _switch(ctx: Context, new_svc: Service, new: list[Instance]) -> str:
    """Route the new instances; "" once HAProxy reports them UP, else why not."""
    try:
        sync_routes(ctx)
    except EdgeError as exc:
        return f"HAProxy could not be updated ({exc.message})"
    laggards = wait_edge_up(ctx, new_svc, new)
    return f"HAProxy's health check did not mark {', '.join(laggards)} UP" if laggards else ""


def fail_unfinished_releases(ctx: Context, service: str, reason: str) -> None:
    for release in ctx.state.releases(service):
        if release.status in UNFINISHED_RELEASE:
            ctx.state.set_release_status(service, release.number, ReleaseStatus.FAILED, reason)


def _indent(lines: tuple[str, ...]) -> str:
    return "\n".join(f"    | {line}" for line in lines[-15:])
