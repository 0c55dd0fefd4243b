"""Build: create release N of a service, copy its source into the release, give a Python
release its own virtualenv, and run the buildCommand there with a clean environment.

A failed build marks the release build-failed and raises BuildFailed; the live release is never
touched (invariant 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.blueprint.spec import ServiceSpec
from shipyard.builds.builder import indent, run_logged
from shipyard.builds.environment import compose_env, release_toolchain
from shipyard.builds.python import create_venv
from shipyard.context import Context, Emit
from shipyard.errors import BuildFailed
from shipyard.records import Release, ReleaseStatus
from shipyard.release.env import platform_env
from shipyard.release.store import release_paths, service_paths
from shipyard.source.snapshot import GitInfo, copy_tree

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
                + indent(result.log_tail)
                + f"\n  (full log: shipyard logs {req.service} --build)",
                fields={"service": req.service, "release": number},
            )
    else:
        paths.build_log.write_text("==> no buildCommand\n")
    ctx.state.set_release_status(req.service, number, ReleaseStatus.BUILT)
    emit(f"release {number}: build succeeded", "info")
    return ctx.state.release(req.service, number)
