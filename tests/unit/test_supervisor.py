"""Supervisor decisions with a fake runtime and clock (the real thing is in integration)."""

from __future__ import annotations

import json
from pathlib import Path

from shipyard.clock import FakeClock
from shipyard.controlplane.claims import Claims
from shipyard.controlplane.context import Context
from shipyard.controlplane.db import Database
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.state import State
from shipyard.controlplane.supervisor import Supervisor
from shipyard.route.table import RoutingTable, ServerStats
from shipyard.run.runtime import ExitStatus, ProcessHandle, ProcessSpec
from shipyard.settings import Settings


class FakeRuntime:
    def __init__(self) -> None:
        self.live: set[int] = set()
        self.next_pid = 100
        self.started: list[ProcessSpec] = []

    def start(self, spec: ProcessSpec) -> ProcessHandle:
        self.next_pid += 1
        self.live.add(self.next_pid)
        self.started.append(spec)
        return ProcessHandle(self.next_pid, 1)

    def status(self, handle: ProcessHandle) -> ExitStatus:
        running = handle.pid in self.live
        return ExitStatus(running, None if running else 2, None)

    def alive(self, handle: ProcessHandle) -> bool:
        return handle.pid in self.live

    def stop(self, handle: ProcessHandle, grace_s: float) -> ExitStatus:
        self.live.discard(handle.pid)
        return ExitStatus(False, 0, None)

    def run(self, spec: ProcessSpec, timeout_s: float) -> int:
        return 0

    def ports_listening(self, handle: ProcessHandle) -> set[int]:
        return set()


class FakeEdge:
    def __init__(self) -> None:
        self.tables: list[RoutingTable] = []

    def apply(self, table: RoutingTable) -> None:
        self.tables.append(table)

    def check(self, table: RoutingTable) -> None:
        pass

    def ensure_running(self, table: RoutingTable) -> None:
        self.apply(table)

    def server_stats(self, backend: str, server: str) -> ServerStats | None:
        return ServerStats("UP", 0, 0)

    def old_workers(self) -> int:
        return 0

    def is_running(self) -> bool:
        return True

    def stop(self, timeout: float = 10) -> None:
        pass


def make_ctx(tmp_path: Path) -> tuple[Context, FakeRuntime, FakeEdge, FakeClock]:
    clock = FakeClock()
    runtime, edge = FakeRuntime(), FakeEdge()
    settings = Settings(home=tmp_path)
    ctx = Context(
        settings=settings,
        state=State(Database(tmp_path / "s.db"), clock),
        box=SecretBox(tmp_path / "k"),
        runtime=runtime,
        edge=edge,
        clock=clock,
    )
    spec = {"start_command": "python3 w.py", "root_dir": "", "env_vars": []}
    ctx.state.register_service("jobs", "worker", spec, "bp", 1, None)
    ctx.state.add_release(
        service="jobs",
        number=1,
        status="live",
        config_digest="d",
        source="s",
        dir=str(tmp_path),
        spec_json=json.dumps(spec),
        env_enc=ctx.box.encrypt_env({"A": "1"}),
    )
    ctx.state.set_current_release("jobs", 1)
    ctx.state.add_instance("jobs-1", "jobs", 1, 5000, str(tmp_path / "i.log"))
    ctx.state.update_instance("jobs-1", state="running", pid=1, start_time=1)
    return ctx, runtime, edge, clock


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
    ctx, runtime, edge, clock = make_ctx(tmp_path)
    runtime.live.add(1)  # the process is alive, but hung
    status = {"value": "DOWN"}
    edge.server_stats = lambda b, s: ServerStats(status["value"], 0, 0)  # type: ignore[method-assign,assignment]
    sup = Supervisor(ctx, Claims())
    sup.tick()
    clock.advance(30)
    status["value"] = "UP"  # recovered in time: the clock starts over
    sup.tick()
    status["value"] = "DOWN"
    sup.tick()
    clock.advance(59)
    sup.tick()
    assert ctx.state.instance("jobs-1").state == "running"
    clock.advance(1)
    sup.tick()
    inst = ctx.state.instance("jobs-1")
    assert inst.state == "crashed" and "failed health checks for 60 s" in inst.last_exit
    assert 1 not in runtime.live  # the hung process was stopped


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
    ctx.state.update_instance("jobs-1", state="restarting")  # its thread died with the daemon
    Supervisor(ctx, Claims()).reconcile()
    assert ctx.state.instance("jobs-1").state == "crashed"
