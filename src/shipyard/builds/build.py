"""Build: create release N of a service, copy its source into the release, give a Python
release its own virtualenv, and run the buildCommand there with a clean environment.

A failed build marks the release build-failed and raises BuildFailed; the live release is never
touched (invariant 3).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from shipyard.blueprint.spec import ServiceSpec
from shipyard.builds.builder import indent, run_logged
from shipyard.builds.environment import RECORD, compose_env
from shipyard.builds.seed import dependency_key, seed_dependencies
from shipyard.builds.toolchain import prepare_toolchain, save_record
from shipyard.context import Context, Emit
from shipyard.errors import BuildFailed, NoDiskSpace, UsageError
from shipyard.records import Release, ReleaseStatus
from shipyard.release.env import platform_env
from shipyard.release.files import make_private, share_unchanged
from shipyard.release.masking import secret_values
from shipyard.release.store import ReleasePaths, release_paths, service_paths
from shipyard.source.snapshot import GitInfo, copy_tree, tree_bytes

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
    clean: bool = False  # `deploy --clear-cache`: nothing reused from earlier builds


def _workdir(app: Path, root_dir: str) -> Path | None:
    """The release's working directory: ``rootDir`` resolved (through links the snapshot kept)
    inside the copy; None if it is missing, not a directory or leads outside the copy."""
    workdir = (app / root_dir).resolve() if root_dir else app.resolve()
    if not workdir.is_relative_to(app.resolve()) or not workdir.is_dir():
        return None
    return workdir


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
    try:
        ctx.disk.require(tree_bytes(req.source_root, exclude=ctx.settings.home))
    except NoDiskSpace as exc:
        ctx.state.set_release_status(req.service, number, failed, exc.message)
        raise
    paths.dir.mkdir(parents=True, exist_ok=True)
    try:
        _build(ctx, req, release, paths, emit)
        make_private(paths.dir)
        _share_with_previous(ctx, release, emit)
    except BaseException:
        # A release that did not build is never run: give its space back (a full disk needs
        # it most), keep its build log.
        shutil.rmtree(paths.app, ignore_errors=True)
        shutil.rmtree(paths.venv, ignore_errors=True)
        raise
    ctx.state.set_release_status(req.service, number, ReleaseStatus.BUILT)
    emit(f"release {number}: build succeeded", "info")
    return ctx.state.release(req.service, number)


def _build(
    ctx: Context, req: BuildRequest, release: Release, paths: ReleasePaths, emit: Emit
) -> None:
    """Copy the source into the release, give it its venv, run its buildCommand."""
    number = release.number
    failed = ReleaseStatus.BUILD_FAILED
    try:
        copy_tree(req.source_root, paths.app, exclude=ctx.settings.home)
    except UsageError as exc:
        ctx.state.set_release_status(req.service, number, failed, exc.message)
        raise BuildFailed(f"{req.service}: {exc.message}", fields=exc.fields) from exc
    workdir = _workdir(paths.app, req.spec.root_dir)
    if workdir is None:
        reason = f"rootDir {req.spec.root_dir!r} does not exist in {req.source_label}"
        if paths.workdir(req.spec.root_dir).exists():
            reason = f"rootDir {req.spec.root_dir!r} leads outside the source tree"
        ctx.state.set_release_status(req.service, number, failed, reason)
        raise BuildFailed(f"{req.service}: {reason}", fields={"service": req.service})
    runtime = req.spec.runtime
    if runtime == "python":
        emit(f"release {number}: creating its virtualenv", "info")

    def notify(message: str) -> None:
        emit(f"release {number}: {message}", "info")
        ctx.runtime.note(paths.build_log, f"==> {message}")

    try:
        chosen = prepare_toolchain(
            ctx.settings, service=req.service, runtime=runtime, workdir=workdir,
            venv=paths.venv, service_env=req.env, notify=notify,
            commands=tuple(
                c or "" for c in (req.spec.build_command, req.spec.start_command,
                                  req.spec.pre_deploy_command)
            ),
        )  # fmt: skip
        save_record(paths.dir, chosen.toolchain)
        key = dependency_key(runtime, workdir, paths.dir, (paths.dir / RECORD).read_text(),
                             req.spec.root_dir, req.spec.build_command or "")  # fmt: skip
        if key is not None and not req.clean:
            seed_dependencies(ctx, req.service, number, paths.dir, workdir, runtime, key,
                              notify)  # fmt: skip
    except BuildFailed as exc:
        ctx.state.set_release_status(req.service, number, failed, exc.message)
        ctx.runtime.note(paths.build_log, f"==> {exc.message}")
        raise BuildFailed(
            f"{req.service}: {exc.message}", fields={"service": req.service, "release": number}
        ) from exc
    except NoDiskSpace as exc:
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
            toolchain=chosen.toolchain,
            build_env=chosen.build_env,
            service_env=req.env,
            platform_env={
                **platform_env(ctx, svc, release),
                "CI": "true",
                RELEASE_MARKER: release_marker(req.service, number),
            },
        )
        timeout_s = ctx.settings.build_timeout_s
        result = run_logged(
            ctx.runtime,
            label="build",
            command=command,
            cwd=workdir,
            env=env,
            log_path=paths.build_log,
            timeout_s=timeout_s,
            mask=secret_values(ctx, req.spec, req.env),
        )
        if not result.ok:
            reason = f"build command exited with code {result.exit_code}"
            if result.timed_out:
                reason = (
                    f"build command timed out after {_duration(timeout_s)} and was killed with "
                    "its processes (raise the limit with SHIPYARD_BUILD_TIMEOUT=<seconds> in "
                    "the daemon's environment)"
                )
            disk = ctx.disk.status()  # before the half-built tree is removed
            if disk.low:
                # Its own error output may not have reached the log: say what is likely.
                reason += f" with the disk nearly full ({disk.describe()})"
            ctx.state.set_release_status(req.service, number, failed, reason)
            error = NoDiskSpace if disk.low else BuildFailed
            raise error(
                f"{req.service}: {reason}; the current release keeps serving.\n"
                + indent(result.log_tail)
                + f"\n  (full log: shipyard logs {req.service} --build)",
                fields={"service": req.service, "release": number},
            )
    else:
        ctx.runtime.note(paths.build_log, "==> no buildCommand")


def _share_with_previous(ctx: Context, release: Release, emit: Emit) -> None:
    """Files of ``release`` equal to those of the newest earlier release still on disk share
    its data (see release.files)."""
    earlier = [
        r for r in ctx.state.releases(release.service)
        if r.number < release.number and not r.pruned and r.deployable and Path(r.dir).is_dir()
    ]  # fmt: skip
    if not earlier:
        return
    previous = max(earlier, key=lambda r: r.number)
    mine, theirs = ReleasePaths(Path(release.dir)), ReleasePaths(Path(previous.dir))
    # The artifact only: a release's logs (and their writers' lock files) stay its own.
    found = [share_unchanged(mine.app, theirs.app), share_unchanged(mine.venv, theirs.venv)]
    files, size = sum(s.files for s in found), sum(s.bytes for s in found)
    if files:
        method = next(s.method for s in found if s.files)
        emit(
            f"release {release.number}: {files} unchanged file(s), {size / 1e6:.1f} MB, "
            f"shared with release {previous.number} ({method})",
            "info",
        )


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min ({seconds:g} s)"
    return f"{seconds:g} s"
