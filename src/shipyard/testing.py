"""Public fakes for unit tests of the control plane (in the spirit of httpx's MockTransport).

:class:`FakeRuntime` implements the Runtime protocol with pids in a set, :class:`FakeEdge` the
Router protocol by recording the tables it is given, and :func:`make_context` wires them with a
real State (SQLite in a temporary directory), a FakeClock and a real SecretBox, so engine,
rollout, scale, drain and recovery logic runs for real without processes or HAProxy.
:func:`seed_service` creates a service with a live release and running instances through the
state store's public methods only.

Fakes are for unit tests of logic; integration tests use the real HAProxy and real processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.blueprint.spec import ServiceSpec
from shipyard.clock import FakeClock
from shipyard.context import Context
from shipyard.controlplane.datastate import DataState
from shipyard.controlplane.db import Database
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.state import State
from shipyard.records import InstanceState, Release, ReleaseStatus, Service, ServiceType
from shipyard.route.table import RoutingTable, ServerStats
from shipyard.run.runtime import ExitStatus, ProcessHandle, ProcessSpec
from shipyard.settings import Settings

__all__ = ["FakeEdge", "FakeRuntime", "make_context", "seed_release", "seed_service"]

ServerKey = tuple[str, str]  # (service, server), as in route/table.py


@dataclass
class FakeRuntime:
    """Processes are pids in ``live``; a test kills one with ``live.discard(pid)``.

    ``exit_code`` is what a dead process reports; ``ports`` maps pid -> ports it listens on;
    ``run_exit`` is the exit code of every blocking command (builds, pre-deploy)."""

    live: set[int] = field(default_factory=set)
    next_pid: int = 100
    started: list[ProcessSpec] = field(default_factory=list)
    stopped: list[ProcessHandle] = field(default_factory=list)
    ran: list[ProcessSpec] = field(default_factory=list)
    exit_code: int = 2
    run_exit: int = 0
    ports: dict[int, set[int]] = field(default_factory=dict)
    env_markers: dict[int, dict[str, str]] = field(default_factory=dict)
    start_dead: bool = False  # processes started now exit at once (a crash on start)
    log: list[str] = field(default_factory=list)  # "start <pid> <RENDER_INSTANCE_ID>", "stop <pid>"

    def start(self, spec: ProcessSpec) -> ProcessHandle:
        self.next_pid += 1
        if not self.start_dead:
            self.live.add(self.next_pid)
        self.started.append(spec)
        self.env_markers[self.next_pid] = dict(spec.env)
        self.log.append(f"start {self.next_pid} {spec.env.get('RENDER_INSTANCE_ID', '')}")
        return ProcessHandle(self.next_pid, 1)

    def status(self, handle: ProcessHandle) -> ExitStatus:
        running = handle.pid in self.live
        return ExitStatus(running, None if running else self.exit_code, None)

    def alive(self, handle: ProcessHandle) -> bool:
        return handle.pid in self.live

    def stop(
        self, handle: ProcessHandle, grace_s: float, sig: int = 15, whole_group: bool = True
    ) -> ExitStatus:
        self.live.discard(handle.pid)
        self.stopped.append(handle)
        self.log.append(f"stop {handle.pid}")
        return ExitStatus(False, 0, None)

    def run(self, spec: ProcessSpec, timeout_s: float) -> int:
        self.ran.append(spec)
        return self.run_exit

    def ports_listening(self, handle: ProcessHandle) -> set[int]:
        return set(self.ports.get(handle.pid, set()))

    def find(self, marker_key: str, marker_value: str) -> list[ProcessHandle]:
        return [
            ProcessHandle(pid, 1)
            for pid, env in self.env_markers.items()
            if pid in self.live and env.get(marker_key) == marker_value
        ]

    def note(self, log_path: Path, line: str) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            log.write(line + "\n")

    def tail(self, log_path: Path, lines: int) -> list[str]:
        try:
            return log_path.read_text().splitlines()[-lines:]
        except FileNotFoundError:
            return []


@dataclass
class FakeEdge:
    """Records every applied table; ``stats`` answers server_stats (default: every server UP
    and idle). ``fail_apply`` makes apply raise (set it to an EdgeError)."""

    tables: list[RoutingTable] = field(default_factory=list)
    stats: Callable[[str, str], ServerStats | None] = lambda backend, server: ServerStats(
        "UP", 0, 0
    )
    fail_apply: Exception | None = None
    running: bool = True
    workers_left: int = 0
    reload_count: int = 0

    @property
    def table(self) -> RoutingTable:
        return self.tables[-1] if self.tables else RoutingTable()

    def apply(self, table: RoutingTable) -> None:
        if self.fail_apply is not None:
            raise self.fail_apply
        self.tables.append(table)

    def check(self, table: RoutingTable) -> None:
        if self.fail_apply is not None:
            raise self.fail_apply

    def ensure_running(self, table: RoutingTable) -> None:
        self.running = True
        self.apply(table)

    def server_stats(self, backend: str, server: str) -> ServerStats | None:
        return self.stats(backend, server)

    def all_server_stats(self) -> dict[ServerKey, ServerStats]:
        found = {}
        for backend in self.table.backends:
            for server in backend.servers:
                stats = self.stats(backend.name, server.name)
                if stats is not None:
                    found[(backend.name, server.name)] = stats
        return found

    def old_workers(self) -> int:
        return self.workers_left

    def reloads(self) -> int:
        return self.reload_count

    def is_running(self) -> bool:
        return self.running

    def stop(self, timeout: float = 10) -> None:
        self.running = False


def make_context(
    tmp_path: Path, runtime: FakeRuntime | None = None, edge: FakeEdge | None = None
) -> Context:
    """A Context over a real State in ``tmp_path`` with fakes for processes, edge and time."""
    clock = FakeClock()
    db = Database(tmp_path / "state.db")
    return Context(
        settings=Settings(home=tmp_path, health_interval_s=0.25),
        state=State(db, clock),
        data=DataState(db, clock),
        box=SecretBox(tmp_path / "secret.key"),
        runtime=runtime or FakeRuntime(),
        edge=edge or FakeEdge(),
        clock=clock,
    )


def seed_service(
    ctx: Context,
    name: str,
    type_: ServiceType = "worker",
    *,
    instances: int = 1,
    env: dict[str, str] | None = None,
    internal_port: int | None = None,
    release: int = 1,
    **spec_fields: object,
) -> Service:
    """A service with live release ``release`` and ``instances`` running instances (pids taken
    from the context's FakeRuntime, ports 5000+)."""
    spec = ServiceSpec(
        name=name,
        type=type_,
        runtime="python",
        start_command="python3 app.py",
        num_instances=instances,
        **spec_fields,  # type: ignore[arg-type]
    ).stored(ctx.box.digest)
    ctx.state.register_service(name, type_, spec, "bp", instances, internal_port)
    rel = ctx.state.add_release(
        service=name, number=release, config_digest=spec.config_digest(), git_commit="",
        git_branch="", source="test", dir=str(ctx.settings.services_dir / name), spec=spec,
        env_enc=ctx.box.encrypt_env(env or {}), deploy_id=None,
    )  # fmt: skip
    ctx.state.mark_deployable(name, rel.number)
    ctx.state.promote(name, rel.number, ReleaseStatus.SUPERSEDED, spec, instances)
    runtime = ctx.runtime
    assert isinstance(runtime, FakeRuntime)
    for n in range(instances):
        inst_id = f"{name}-{n + 1}"
        handle = runtime.start(
            ProcessSpec("python3 app.py", ctx.settings.home, {}, ctx.settings.home / "x.log")
        )
        ctx.state.add_instance(
            inst_id, name, rel.number, 5000 + n, str(ctx.settings.home / inst_id)
        )
        ctx.state.update_instance(
            inst_id, state=InstanceState.RUNNING, pid=handle.pid, start_time=handle.start_time
        )
    return ctx.state.service(name)


def seed_release(
    ctx: Context, name: str, spec: ServiceSpec | None = None, env: dict[str, str] | None = None
) -> Release:
    """The next release of service ``name``, built and deployable (as after build and
    pre-deploy), with the live spec unless ``spec`` is given."""
    spec = spec or ctx.state.service(name).spec
    number = ctx.state.next_release_number(name)
    ctx.state.add_release(
        service=name, number=number, config_digest=spec.config_digest(), git_commit="",
        git_branch="", source="test", dir=str(ctx.settings.services_dir / name), spec=spec,
        env_enc=ctx.box.encrypt_env(env or {}), deploy_id=None,
    )  # fmt: skip
    ctx.state.set_release_status(name, number, ReleaseStatus.BUILT)
    ctx.state.mark_deployable(name, number)
    return ctx.state.release(name, number)
