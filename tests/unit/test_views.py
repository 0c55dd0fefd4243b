"""What `ps` and the API say: the current state kept apart from history."""

from __future__ import annotations

from pathlib import Path

from shipyard.controlplane.views import instance_view, service_view
from shipyard.observe.logs import read_logs
from shipyard.records import InstanceState, ReleaseStatus
from shipyard.testing import make_context, seed_service


def test_a_running_instance_with_recent_restarts_is_not_a_crash_loop(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    seed_service(ctx, "api", instances=1)
    now = ctx.clock.now()
    ctx.state.update_instance("api-1", restarts=3, crash_times=(now - 30, now - 20, now - 10))
    view = instance_view(ctx, ctx.state.instance("api-1"))
    assert view.state == "running" and not view.crash_loop
    assert view.recent_restarts == 3 and view.restarts == 3
    assert view.summary == "running, 3 restarts in the last 10 min"
    assert service_view(ctx, ctx.state.service("api"), busy=False).status == "live"
    # crashing again now: that is a crash loop, and the service says so
    ctx.state.update_instance("api-1", state=InstanceState.CRASHED, restart_at=now + 8)
    view = instance_view(ctx, ctx.state.instance("api-1"))
    assert view.crash_loop and view.summary.startswith("crashed (crash loop), 3 restarts")
    assert service_view(ctx, ctx.state.service("api"), busy=False).status == "crash-loop"


def test_old_restarts_leave_the_window(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    seed_service(ctx, "api", instances=1)
    now = ctx.clock.now()
    ctx.state.update_instance("api-1", restarts=5, crash_times=(now - 3600, now - 3000))
    view = instance_view(ctx, ctx.state.instance("api-1"))
    assert view.recent_restarts == 0 and view.restarts == 5 and view.summary == "running"


def test_a_failed_first_deploy_shows_failed_never_served(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    svc = seed_service(ctx, "api", instances=1)
    ctx.state.register_service("fresh", "worker", svc.spec, "bp", 1, None)
    ctx.state.add_release(
        service="fresh", number=1, config_digest="d", git_commit="", git_branch="",
        source="s", dir="/nonexistent", spec=svc.spec, env_enc=ctx.box.encrypt_env({}),
        deploy_id=None,
    )  # fmt: skip
    ctx.state.set_release_status(
        "fresh", 1, ReleaseStatus.BUILD_FAILED, "build command exited with code 1"
    )
    view = service_view(ctx, ctx.state.service("fresh"), busy=False)
    assert view.status == "failed" and view.never_served
    assert view.last_failure == "release 1 build-failed: build command exited with code 1"
    live = service_view(ctx, ctx.state.service("api"), busy=False)
    assert live.status == "live" and not live.never_served and live.last_failure is None


def test_logs_of_several_instances_are_merged_in_time_order(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    seed_service(ctx, "api", instances=2)
    first, second = (Path(i.log_path) for i in ctx.state.instances("api"))
    first.write_text("2026-12-02T10:00:00.000001Z a1\n2026-12-02T10:00:02.000000Z a2\n")
    second.write_text("2026-12-02T10:00:01.000000Z b1\n2026-12-02T10:00:03.000000Z b2\n")
    lines = read_logs(ctx, "api", build=False, lines=3, release=None)
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["b1", "a2", "b2"]
    assert lines[0].startswith("[api-2] ")
