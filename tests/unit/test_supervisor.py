"""Supervisor decisions with a fake runtime and clock (the real thing is in integration)."""

from __future__ import annotations

from pathlib import Path

from shipyard.clock import FakeClock
from shipyard.context import Context
from shipyard.records import InstanceState
from shipyard.route.desired import sync_routes
from shipyard.route.table import ServerStats
from shipyard.run.claims import Claims
from shipyard.run.runtime import ProcessHandle, ProcessSpec
from shipyard.run.supervisor import Supervisor
from shipyard.testing import FakeEdge, FakeRuntime, make_context, seed_service


def make_ctx(tmp_path: Path) -> tuple[Context, FakeRuntime, FakeEdge, FakeClock]:
    """One worker "jobs" with live release 1 and one instance "jobs-1" whose process (pid 1)
    is dead: the supervisor sees a crash on its first tick unless a test revives it."""
    runtime, edge = FakeRuntime(), FakeEdge()
    ctx = make_context(tmp_path, runtime, edge)
    seed_service(ctx, "jobs", env={"A": "1"})
    ctx.state.update_instance("jobs-1", pid=1, start_time=1)
    runtime.live.clear()
    runtime.started.clear()
    assert isinstance(ctx.clock, FakeClock)
    return ctx, runtime, edge, ctx.clock


def test_crash_is_recorded_then_restarted_after_backoff(tmp_path: Path) -> None:
    ctx, runtime, edge, clock = make_ctx(tmp_path)
    sup = Supervisor(ctx, Claims())
    sup.tick()  # pid 1 is not alive: crash
    inst = ctx.state.instance("jobs-1")
    assert inst.state == "crashed" and inst.last_exit == "exited with code 2"
    assert inst.restart_at == clock.now() + 1.0
    assert edge.tables, "a crash must resync routing"
    sup._restart(inst)  # what the tick's thread runs once restart_at has passed
    inst = ctx.state.instance("jobs-1")
    assert inst.state == "running" and inst.restarts == 1 and inst.pid in runtime.live
    assert runtime.started[-1].env["PORT"] == "5000"  # same port as before
    assert runtime.started[-1].env["A"] == "1"


def test_repeated_crashes_back_off_and_report_a_loop(tmp_path: Path) -> None:
    ctx, runtime, _, clock = make_ctx(tmp_path)
    sup = Supervisor(ctx, Claims())
    delays = []
    for _ in range(4):
        runtime.live.clear()
        sup.tick()
        inst = ctx.state.instance("jobs-1")
        delays.append((inst.restart_at or 0) - clock.now())
        clock.advance(delays[-1])
        sup._restart(inst)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert ctx.policy.crash_looping(ctx.state.instance("jobs-1").crash_times, clock.now())


def test_busy_service_is_left_to_its_operation(tmp_path: Path) -> None:
    ctx, _, _, clock = make_ctx(tmp_path)
    claims = Claims()
    claims.claim(["jobs"], "deploy")
    sup = Supervisor(ctx, claims)
    sup.tick()
    clock.advance(10)
    sup.tick()
    assert ctx.state.instance("jobs-1").state == "crashed"  # recorded, not restarted
    assert not sup._restarting


def test_instance_down_in_haproxy_for_a_minute_is_restarted(tmp_path: Path) -> None:
    runtime, edge = FakeRuntime(), FakeEdge()
    ctx = make_context(tmp_path, runtime, edge)
    seed_service(ctx, "webby", "web", internal_port=7000)  # alive, but hung
    sync_routes(ctx)
    status = {"value": "DOWN"}
    edge.stats = lambda b, s: ServerStats(status["value"], 0, 0)
    clock = ctx.clock
    assert isinstance(clock, FakeClock)
    sup = Supervisor(ctx, Claims())
    sup.tick()  # DOWN seen at t=0
    clock.advance(30)
    status["value"] = "UP"  # recovered in time: the clock starts over
    sup.tick()
    status["value"] = "DOWN"
    clock.advance(5)
    sup.tick()  # DOWN again since t=35
    for _ in range(11):  # the edge is asked every 5 s: t=40 ... t=90
        clock.advance(5)
        sup.tick()
    assert ctx.state.instance("webby-1").state == "running"
    clock.advance(5)
    sup.tick()  # t=95: DOWN for 60 s
    inst = ctx.state.instance("webby-1")
    assert inst.state == "crashed" and "failed health checks for 60 s" in inst.last_exit
    assert inst.pid not in runtime.live  # the hung process was stopped


def test_a_restart_that_cannot_start_goes_back_to_crashed(tmp_path: Path) -> None:
    ctx, runtime, _, clock = make_ctx(tmp_path)
    sup = Supervisor(ctx, Claims())
    sup.tick()  # crashed

    def broken(spec: ProcessSpec) -> ProcessHandle:
        raise OSError("No space left on device")

    runtime.start = broken  # type: ignore[method-assign]
    sup._restart(ctx.state.instance("jobs-1"))
    inst = ctx.state.instance("jobs-1")
    assert inst.state == "crashed" and "No space left" in inst.last_exit
    assert (inst.restart_at or 0) > clock.now()  # retried later, with backoff


def test_cleanup_retries_a_restart_left_unfinished(tmp_path: Path) -> None:
    ctx, _, _, _ = make_ctx(tmp_path)
    ctx.state.update_instance(
        "jobs-1", state=InstanceState.RESTARTING
    )  # its thread died with the daemon
    Supervisor(ctx, Claims()).reconcile()
    assert ctx.state.instance("jobs-1").state == "crashed"
