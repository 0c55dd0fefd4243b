"""Recovery and supervisor races with fakes (the timing cannot be forced on real processes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from shipyard.context import Context
from shipyard.records import InstanceState, OperationKind, ReleaseStatus
from shipyard.run.claims import Claims
from shipyard.run.recovery import recover
from shipyard.run.runtime import ProcessSpec
from shipyard.run.supervisor import Supervisor
from tests.unit.test_supervisor import make_ctx


def add_release(
    ctx: Context, number: int, live: bool = False, deploy_id: int | None = None
) -> None:
    """Release ``number`` of "jobs" (built by operation ``deploy_id``), deploying (or, with
    ``live``, promoted: traffic switched)."""
    svc = ctx.state.service("jobs")
    spec = replace(svc.spec, max_shutdown_delay_seconds=1)
    ctx.state.add_release(
        service="jobs", number=number, config_digest="d", git_commit="", git_branch="",
        source="s", dir="/nonexistent", spec=spec, env_enc=ctx.box.encrypt_env({}),
        deploy_id=deploy_id,
    )  # fmt: skip
    ctx.state.set_release_status("jobs", number, ReleaseStatus.DEPLOYING)
    if live:
        ctx.state.promote("jobs", number, ReleaseStatus.SUPERSEDED, spec, None)


def test_recovery_drains_instances_of_a_release_that_is_no_longer_live(tmp_path: Path) -> None:
    """The daemon died after switching traffic to release 2 and before draining release 1."""
    ctx, runtime, _, _ = make_ctx(tmp_path)
    runtime.live.add(1)  # release 1's instance, still running
    add_release(ctx, 2, live=True)  # promoted: traffic already switched
    ctx.state.add_instance("jobs-2", "jobs", 2, 5001, str(tmp_path / "j2.log"))
    new_pid = runtime.start(_spec(tmp_path)).pid
    ctx.state.update_instance("jobs-2", state=InstanceState.RUNNING, pid=new_pid, start_time=1)
    recover(ctx)
    assert ctx.state.instance("jobs-1").state == "stopped" and 1 not in runtime.live
    assert ctx.state.instance("jobs-2").state == "running" and new_pid in runtime.live
    assert ctx.state.release("jobs", 2).status == "live"
    assert ctx.state.service("jobs").current_release == 2


def test_recovery_stops_instances_that_were_never_routed(tmp_path: Path) -> None:
    ctx, runtime, _, _ = make_ctx(tmp_path)
    runtime.live.add(1)
    add_release(ctx, 2)
    ctx.state.add_instance("jobs-new", "jobs", 2, 5002, str(tmp_path / "n.log"))
    pid = runtime.start(_spec(tmp_path)).pid
    ctx.state.update_instance("jobs-new", pid=pid, start_time=1)  # still "starting"
    deploy_id = ctx.state.add_deploy(OperationKind.DEPLOY, "jobs")
    recover(ctx)
    assert pid not in runtime.live and ctx.state.instance("jobs-new").state == "stopped"
    assert ctx.state.instance("jobs-1").state == "running" and 1 in runtime.live
    assert ctx.state.deploy(deploy_id).status == "failed"


def test_supervisor_does_not_undo_an_operation(tmp_path: Path) -> None:
    """A scale-down stopped the instance between the supervisor's read and its write."""
    ctx, _, _, _ = make_ctx(tmp_path)
    sup = Supervisor(ctx, Claims())
    stale = ctx.state.instance("jobs-1")  # read as running
    ctx.state.update_instance("jobs-1", state="stopped")  # the operation wins
    assert not sup._record_crash(stale, ctx.clock.now())
    assert ctx.state.instance("jobs-1").state == "stopped"


def test_supervisor_restart_waits_for_the_service_claim(tmp_path: Path) -> None:
    ctx, runtime, _, _ = make_ctx(tmp_path)
    claims = Claims()
    sup = Supervisor(ctx, claims)
    sup.tick()  # pid 1 is dead: crashed
    claims.claim(["jobs"], "operation #7")
    sup._restart(ctx.state.instance("jobs-1"))
    assert ctx.state.instance("jobs-1").state == "crashed" and not runtime.started
    claims.free(["jobs"], "operation #7")
    sup._restart(ctx.state.instance("jobs-1"))
    assert ctx.state.instance("jobs-1").state == "running"


def _spec(tmp_path: Path) -> ProcessSpec:
    return ProcessSpec(command="x", cwd=tmp_path, env={}, log_path=tmp_path / "x.log")


def _deploy_with_release(ctx: Context, number: int, *, live: bool) -> int:
    deploy_id = ctx.state.add_deploy(OperationKind.DEPLOY, "jobs")
    add_release(ctx, number, live=live, deploy_id=deploy_id)
    return deploy_id


def test_an_interrupted_deploy_whose_release_went_live_succeeded(tmp_path: Path) -> None:
    """The daemon died after the switch: the outcome comes from what is live, not 'failed'."""
    ctx, runtime, _, _ = make_ctx(tmp_path)
    runtime.live.add(1)
    deploy_id = _deploy_with_release(ctx, 2, live=True)
    recover(ctx)
    op = ctx.state.deploy(deploy_id)
    assert op.status == "succeeded" and op.error == ""
    assert op.result["jobs"].status == "ok" and op.result["jobs"].release == 2
    events = [e.message for e in ctx.state.events(deploy_id)]
    assert any(m.startswith("succeeded (recovered)") for m in events)


def test_an_interrupted_deploy_that_never_went_live_failed(tmp_path: Path) -> None:
    ctx, runtime, _, _ = make_ctx(tmp_path)
    runtime.live.add(1)
    deploy_id = _deploy_with_release(ctx, 2, live=False)
    recover(ctx)
    op = ctx.state.deploy(deploy_id)
    assert op.status == "failed" and op.error.startswith("interrupted")
    assert op.result["jobs"].status == "failed"
    assert ctx.state.release("jobs", 2).status == "failed"
    assert ctx.state.service("jobs").current_release == 1
