"""The pre-deploy command (migrations): run once per release, after its build, before any
instance starts, with the release's runtime environment. Its failure cancels the deploy and
the live release keeps serving; only a release past it may ever be rolled out (deployable)."""

from __future__ import annotations

from shipyard.builds.build import RELEASE_MARKER, release_marker
from shipyard.builds.builder import indent, run_logged
from shipyard.context import Context, Emit
from shipyard.errors import DeployFailed
from shipyard.records import Release, ReleaseStatus
from shipyard.release.env import runtime_env
from shipyard.release.masking import secret_values
from shipyard.release.store import artifact, release_paths

PRE_DEPLOY_TIMEOUT_S = 1800.0


def run_pre_deploy(ctx: Context, release: Release, emit: Emit) -> None:
    name, number = release.service, release.number
    command = release.spec.pre_deploy_command
    if not command:
        ctx.state.mark_deployable(name, number)
        return
    paths = release_paths(ctx.settings.services_dir, name, number)  # its own log
    emit(f"release {number}: running preDeployCommand ({command})", "info")
    svc = ctx.state.service(name)
    env = runtime_env(ctx, svc, release, {RELEASE_MARKER: release_marker(name, number)})
    result = run_logged(
        ctx.runtime,
        label="pre-deploy",
        command=command,
        cwd=artifact(release).workdir(release.spec.root_dir),
        env=env,
        log_path=paths.build_log,
        timeout_s=PRE_DEPLOY_TIMEOUT_S,
        mask=secret_values(ctx, release.spec, ctx.box.decrypt_env(release.env_enc)),
    )
    if not result.ok:
        reason = f"preDeployCommand exited with code {result.exit_code}"
        ctx.state.set_release_status(name, number, ReleaseStatus.FAILED, reason)
        raise DeployFailed(
            f"{name}: {reason}; the deploy was cancelled and the current release "
            "keeps serving.\n" + indent(result.log_tail),
            fields={"service": name, "release": number},
        )
    ctx.state.mark_deployable(name, number)
