"""The rollout executor with the public fakes: each strategy's happy path and its failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.context import Context
from shipyard.errors import DeployFailed, EdgeError
from shipyard.records import InstanceState, ReleaseStatus
from shipyard.rollout.execute import choose_strategy, rollout
from shipyard.rollout.strategy import RECREATE, SURGE
from shipyard.route.table import ServerStats
from shipyard.run.lifecycle import StartFailure, drain_and_stop
from shipyard.testing import FakeEdge, FakeRuntime, make_context, seed_release, seed_service

EVENTS: list[tuple[str, str]] = []


def emit(message: str, level: str = "info") -> None:
    EVENTS.append((level, message))


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    EVENTS.clear()
    ctx = make_context(tmp_path)
    seed_service(ctx, "jobs", instances=2)
    return ctx


def fakes(ctx: Context) -> tuple[FakeRuntime, FakeEdge]:
    assert isinstance(ctx.runtime, FakeRuntime) and isinstance(ctx.edge, FakeEdge)
    return ctx.runtime, ctx.edge


def states(ctx: Context, release: int) -> list[InstanceState]:
    return [i.state for i in ctx.state.instances("jobs", states=tuple(InstanceState))
            if i.release == release]  # fmt: skip


def deploy(ctx: Context) -> int:
    release = seed_release(ctx, "jobs")
    rollout(ctx, release, emit, previous_status=ReleaseStatus.SUPERSEDED, from_blueprint=True)
    return release.number


def test_surge_starts_beside_then_retires_the_old(ctx: Context) -> None:
    runtime, _ = fakes(ctx)
    old_pids = {i.pid for i in ctx.state.instances("jobs")}
    assert choose_strategy(ctx, ctx.state.service("jobs"), ctx.state.instances("jobs")) is SURGE
    assert deploy(ctx) == 2
    assert states(ctx, 2) == [InstanceState.RUNNING] * 2
    assert states(ctx, 1) == [InstanceState.STOPPED] * 2
    assert old_pids.isdisjoint(runtime.live) and len(runtime.live) == 2
    # the new ones started before any old one stopped (capacity never dips)
    first_stop = next(i for i, line in enumerate(runtime.log) if line.startswith("stop"))
    assert sum(line.startswith("start") for line in runtime.log[:first_stop]) == 4
    svc = ctx.state.service("jobs")
    assert svc.current_release == 2
    assert ctx.state.release("jobs", 1).status == ReleaseStatus.SUPERSEDED
    assert ctx.state.release("jobs", 2).status == ReleaseStatus.LIVE


def test_a_crash_on_start_leaves_the_live_release_serving(ctx: Context) -> None:
    runtime, _ = fakes(ctx)
    runtime.start_dead = True
    with pytest.raises(DeployFailed, match="failed to start, no request reached it"):
        deploy(ctx)
    assert states(ctx, 1) == [InstanceState.RUNNING] * 2
    assert all(s in (InstanceState.FAILED, InstanceState.STOPPED) for s in states(ctx, 2))
    assert ctx.state.service("jobs").current_release == 1
    release = ctx.state.release("jobs", 2)
    assert release.status == ReleaseStatus.FAILED and "exited with code 2" in release.reason


def test_an_edge_refusal_after_promotion_is_undone(ctx: Context) -> None:
    _, edge = fakes(ctx)
    edge.fail_apply = EdgeError("listener port in use")
    with pytest.raises(DeployFailed, match="taken out again"):
        deploy(ctx)
    svc = ctx.state.service("jobs")
    assert svc.current_release == 1 and svc.desired_instances == 2
    assert ctx.state.release("jobs", 1).status == ReleaseStatus.LIVE
    assert ctx.state.release("jobs", 2).status == ReleaseStatus.FAILED
    assert "listener port in use" in ctx.state.release("jobs", 2).reason
    assert states(ctx, 1) == [InstanceState.RUNNING] * 2
    assert states(ctx, 2) == [InstanceState.FAILED] * 2


def fixed_port(ctx: Context) -> None:
    """The live instances ignore $PORT and listen on 8000 (detected and recorded)."""
    for inst in ctx.state.instances("jobs"):
        ctx.state.update_instance(inst.id, port=8000)
    ctx.state.set_desired("jobs", 1)


def test_fixed_port_apps_are_recreated(ctx: Context) -> None:
    runtime, _ = fakes(ctx)
    fixed_port(ctx)
    old = ctx.state.instances("jobs")
    assert choose_strategy(ctx, ctx.state.service("jobs"), old) is RECREATE
    deploy(ctx)
    # every old instance stopped before the first new one started
    last_stop = max(i for i, line in enumerate(runtime.log) if line.startswith("stop"))
    new_starts = [i for i, line in enumerate(runtime.log) if " jobs-r2-" in line]
    assert new_starts and last_stop < min(new_starts)
    assert ctx.state.service("jobs").current_release == 2
    assert any("recreate rollout" in m for _, m in EVENTS)


def test_a_failed_recreate_brings_the_old_release_back(ctx: Context) -> None:
    runtime, _ = fakes(ctx)
    fixed_port(ctx)
    original = runtime.start
    calls = {"n": 0}

    def start_new_dead(spec):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        runtime.start_dead = "jobs-r2-" in spec.env.get("RENDER_INSTANCE_ID", "")
        return original(spec)

    runtime.start = start_new_dead  # type: ignore[method-assign]
    with pytest.raises(DeployFailed, match="failed to start"):
        deploy(ctx)
    assert ctx.state.service("jobs").current_release == 1
    assert ctx.state.release("jobs", 2).status == ReleaseStatus.FAILED
    # release 1 runs again, on fresh instances
    assert InstanceState.RUNNING in states(ctx, 1)
    assert any("restarting release 1" in m for _, m in EVENTS)


def test_drain_waits_until_the_edge_sees_no_request_in_flight(tmp_path: Path) -> None:
    """A web service's old instances are drained (HAProxy state drain) and stopped only once
    HAProxy reports them idle; the wait goes by the (fake) clock."""
    ctx = make_context(tmp_path)
    runtime, edge = fakes(ctx)
    seed_service(ctx, "webby", "web", instances=1, internal_port=7000)
    busy_until = ctx.clock.monotonic() + 3.0
    seen: list[str] = []

    def stats(backend: str, server: str) -> ServerStats:
        table_state = next(
            s.state for b in edge.table.backends for s in b.servers if s.name == server
        )
        seen.append(f"{server}:{table_state}")
        inflight = 1 if server == "webby-1" and ctx.clock.monotonic() < busy_until else 0
        return ServerStats("UP", inflight, 0)

    edge.stats = stats
    old = ctx.state.instance("webby-1")
    drain_and_stop(ctx, ctx.state.service("webby"), [old], emit)
    assert "webby-1:drain" in seen  # routed in drain state while requests finished
    assert ctx.clock.monotonic() >= busy_until  # stopped only once idle
    assert old.pid not in runtime.live
    assert ctx.state.instance("webby-1").state == InstanceState.STOPPED
    assert edge.table.backend("webby") is not None
    assert edge.table.backend("webby").servers == ()  # type: ignore[union-attr]


def test_a_start_that_finds_its_port_taken_says_why() -> None:
    failure = StartFailure("web-r2-a", "exited with code 1 before becoming healthy",
                           ("OSError: [Errno 98] Address already in use",))  # fmt: skip
    assert failure.port_in_use and "listens on a fixed port" in failure.describe()
    other = StartFailure("web-r2-a", "exited with code 1", ("ImportError: no module x",))
    assert not other.port_in_use and "hint" not in other.describe()
