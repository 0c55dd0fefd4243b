"""Instance lifecycle: start with the platform env, wait until healthy, drain and stop.

Invariant 1: an instance enters the routing table only after its own health check passed.
Invariant 2: it is stopped only after the edge stopped sending it requests and its in-flight
requests finished (or the drain timeout passed).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from shipyard.clock import poll_while
from shipyard.context import Context, Emit
from shipyard.data import disks
from shipyard.errors import EdgeError
from shipyard.observe.health import Probe
from shipyard.records import OF_RELEASE, Instance, InstanceState, Release, Service
from shipyard.release.env import runtime_env
from shipyard.release.store import artifact, instance_log
from shipyard.route.desired import allocate_port, sync_routes
from shipyard.route.table import ServerStats
from shipyard.run.runtime import ProcessHandle, ProcessSpec

WORKER_SETTLE_S = 2.0
_ROUTED = (InstanceState.RUNNING, InstanceState.DRAINING)
EDGE_UP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class StartFailure:
    instance: str
    reason: str
    log_tail: tuple[str, ...]

    def describe(self) -> str:
        lines = "\n".join(f"    | {line}" for line in self.log_tail[-10:])
        return (
            f"{self.instance}: {self.reason}"
            + (f"\n  last log lines:\n{lines}" if lines else "")
            + (f"\n  hint: {PORT_IN_USE_HINT}" if self.port_in_use else "")
        )

    @property
    def port_in_use(self) -> bool:
        return any(m in line.lower() for line in self.log_tail for m in _IN_USE)


# What apps print when the port they bind is taken (Python, Node, Go, Ruby, Java).
_IN_USE = ("address already in use", "eaddrinuse", "address in use", "bindexception")
PORT_IN_USE_HINT = (
    "the app could not bind its port because another process holds it. An app that ignores "
    "$PORT and listens on a fixed port can run only one instance at a time here: Shipyard "
    "replaces it by stopping the old instance first (the recreate rollout). Make the app "
    "listen on $PORT for zero-downtime deploys and more than one instance."
)


def start_instance(
    ctx: Context, svc: Service, release: Release, existing: Instance | None = None
) -> Instance:
    """Start one instance of ``release`` (or restart ``existing`` on its port)."""
    name = svc.name
    spec = release.spec
    inst_id = existing.id if existing else f"{name}-r{release.number}-{secrets.token_hex(3)}"
    log_path = instance_log(ctx.settings.services_dir, name, inst_id)
    if existing is None:
        with ctx.port_lock:
            port = allocate_port(ctx)
            ctx.state.add_instance(inst_id, name, release.number, port, str(log_path))
    else:
        port = existing.port
    try:
        env = runtime_env(ctx, svc, release, {"PORT": str(port), "RENDER_INSTANCE_ID": inst_id})
        paths = artifact(release)
        binds = disks.binds(ctx, name, spec.disk, paths.app)
        handle = ctx.runtime.start(
            ProcessSpec(
                command=spec.start_command,
                cwd=paths.workdir(spec.root_dir),
                env=env,
                log_path=log_path,
                binds=binds,
            )
        )
    except BaseException as exc:
        # No process: a new row must not stay "starting" (nothing could ever stop it); a
        # restart is put back to "crashed" by the supervisor, to be retried.
        if existing is None:
            ctx.state.update_instance(
                inst_id, state=InstanceState.FAILED, last_exit=f"could not start: {exc}"
            )
        raise
    ctx.state.update_instance(
        inst_id, pid=handle.pid, start_time=handle.start_time, started_at=ctx.clock.now(),
        log_path=str(log_path),  # an instance from before log directories moves to one
    )  # fmt: skip
    return ctx.state.instance(inst_id)


def start_many(ctx: Context, svc: Service, release: Release, count: int) -> list[Instance]:
    """Start ``count`` instances, all or none: if one cannot start, the others are stopped."""
    started: list[Instance] = []
    try:
        for _ in range(count):
            started.append(start_instance(ctx, svc, release))
    except BaseException:
        abandon(ctx, started)
        raise
    return started


def abandon(ctx: Context, instances: list[Instance]) -> None:
    """Stop instances that were never routed and mark them failed."""
    for inst in instances:
        ctx.state.update_instance(inst.id, state=InstanceState.STOPPING)
    stop_all(ctx, instances, grace_s=5.0)
    for inst in instances:
        ctx.state.update_instance(inst.id, state=InstanceState.FAILED)


def handle_of(inst: Instance) -> ProcessHandle:
    return ProcessHandle(pid=inst.pid or 0, start_time=inst.start_time or 0)


def wait_healthy(
    ctx: Context, svc: Service, instances: list[Instance], emit: Emit
) -> list[StartFailure]:
    """Poll every instance until healthy, dead, or out of time (the spec's
    healthCheckTimeoutSeconds, else the default). Returns the failures."""
    spec = svc.spec
    timeout_s = float(spec.health_check_timeout_seconds or ctx.settings.health_timeout_s)
    pending = {i.id: i for i in instances}
    failures: list[StartFailure] = []
    last_detail: dict[str, str] = {}
    started = ctx.clock.monotonic()

    def check_round() -> bool:
        """One check of every pending instance; True while some are still pending."""
        for inst in list(pending.values()):
            status = ctx.runtime.status(handle_of(inst))
            if not status.running:
                del pending[inst.id]
                failures.append(
                    StartFailure(
                        inst.id,
                        _exit_reason(status.exit_code, status.signal),
                        tuple(ctx.runtime.tail(_log(inst), 20)),
                    )
                )
                continue
            if svc.type == "worker":
                if ctx.clock.monotonic() - started >= min(WORKER_SETTLE_S, timeout_s):
                    del pending[inst.id]
                continue
            inst = _follow_actual_port(ctx, inst, emit)
            pending[inst.id] = inst
            probe = Probe(
                port=inst.port,
                path=spec.health_check_path,
                host_header=ctx.settings.external_host(svc.type, svc.name),
                timeout_s=min(5.0, timeout_s),
            )
            result = probe.check()
            last_detail[inst.id] = result.detail
            if result.healthy:
                del pending[inst.id]
                emit(f"{inst.id} is healthy ({result.detail})", "info")
        return bool(pending)

    poll_while(
        ctx.clock, check_round, bool, timeout_s=timeout_s, interval_s=ctx.settings.health_interval_s
    )
    for inst in pending.values():
        reason = (
            f"did not become healthy within {timeout_s:g} s "
            f"(last check: {last_detail.get(inst.id, 'none')})"
        )
        failures.append(StartFailure(inst.id, reason, tuple(ctx.runtime.tail(_log(inst), 20))))
    return failures


def _follow_actual_port(ctx: Context, inst: Instance, emit: Emit) -> Instance:
    """Apps that ignore $PORT (fixed 3000/8000): route to the one port the instance opened."""
    if ctx.clock.now() - (inst.started_at or 0) < 3:
        return inst
    ports = ctx.runtime.ports_listening(handle_of(inst))
    if inst.port in ports or len(ports) != 1:
        return inst
    actual = next(iter(ports))
    emit(
        f"{inst.id} ignores $PORT={inst.port} and listens on {actual}; routing to {actual}",
        "warning",
    )
    ctx.state.update_instance(inst.id, port=actual)
    return ctx.state.instance(inst.id)


def _exit_reason(code: int | None, sig: int | None) -> str:
    if sig:
        return f"exited on signal {sig} before becoming healthy"
    if code is None:
        return "exited before becoming healthy"
    return f"exited with code {code} before becoming healthy"


def _log(inst: Instance) -> Path:
    return Path(inst.log_path)


def wait_edge_up(ctx: Context, svc: Service, instances: list[Instance]) -> list[str]:
    """After routing new servers: wait until HAProxy itself reports them UP (one batched stats
    query per round). Returns laggards."""
    if svc.type == "worker":
        return []
    pending = {i.id for i in instances}

    def laggards() -> list[str]:
        try:
            stats = ctx.edge.all_server_stats()
        except EdgeError:
            return sorted(pending)  # asked again on the next round
        for inst_id in list(pending):
            found = stats.get((svc.name, inst_id))
            if found is not None and found.status.upper().startswith(("UP", "NO CHECK")):
                pending.discard(inst_id)
        return sorted(pending)

    return poll_while(ctx.clock, laggards, bool, timeout_s=EDGE_UP_TIMEOUT_S, interval_s=0.1)


def drain_and_stop(ctx: Context, svc: Service, instances: list[Instance], emit: Emit) -> None:
    """Drain routed instances until no request is in flight, then SIGTERM, then SIGKILL.

    Whatever fails on the way (the edge, a socket), the instances end stopped: the finally
    block is what keeps a half-done drain from leaving processes behind.
    """
    if not instances:
        return
    spec = svc.spec
    try:
        if svc.type != "worker":
            draining = [
                i.id for i in instances
                if ctx.state.transition(i.id, _ROUTED, state=InstanceState.DRAINING)
            ]  # fmt: skip
            sync_quietly(ctx, emit)
            timeout = float(spec.drain_timeout_seconds or ctx.settings.drain_timeout_s)
            busy = wait_idle(ctx, svc.name, draining, timeout)
            if busy:
                emit(
                    f"drain timeout ({timeout:g} s) passed with requests still in flight on "
                    f"{', '.join(busy)}", "warning",
                )  # fmt: skip
    finally:
        for inst in instances:
            ctx.state.transition(
                inst.id, (*OF_RELEASE, InstanceState.DRAINING), state=InstanceState.STOPPING
            )
        sync_quietly(ctx, emit)
        stop_all(ctx, instances, float(spec.max_shutdown_delay_seconds))
    emit(f"stopped {', '.join(i.id for i in instances)}", "info")


def sync_quietly(ctx: Context, emit: Emit) -> None:
    """Update the edge; a failure is reported and left to the supervisor's periodic re-apply."""
    try:
        sync_routes(ctx)
    except EdgeError as exc:
        emit(f"could not update HAProxy ({exc.message}); it will be retried", "warning")


def wait_idle(ctx: Context, backend: str, servers: list[str], timeout_s: float) -> list[str]:
    """Wait until HAProxy reports scur == qcur == 0 for each server and no old worker remains
    (an old worker may still hold requests the new one cannot see). A failed query counts as
    busy and is retried until the timeout. Returns what is still busy."""

    def busy() -> list[str]:
        try:
            stats = ctx.edge.all_server_stats()
            found = [s for s in servers if not _idle(stats.get((backend, s)))]
            if not found and ctx.edge.old_workers() > 0:
                found = ["(a previous HAProxy worker)"]
        except EdgeError:
            found = ["(HAProxy did not answer)"]
        return found

    return poll_while(ctx.clock, busy, bool, timeout_s=timeout_s, interval_s=0.05)


def _idle(stats: ServerStats | None) -> bool:
    return stats is None or stats.idle


def stop_all(ctx: Context, instances: list[Instance], grace_s: float) -> None:
    """SIGTERM every instance's process group at once; SIGKILL after ``grace_s``. The pid is
    read again first: a restart may have replaced the process since ``instances`` was read."""

    def stop(inst: Instance) -> None:
        fresh = ctx.state.instance(inst.id)
        if fresh.pid is None:  # started but never recorded: find it by its marker
            for handle in ctx.runtime.find("RENDER_INSTANCE_ID", inst.id):
                ctx.runtime.stop(handle, grace_s)
        status = ctx.runtime.stop(handle_of(fresh), grace_s)
        ctx.state.update_instance(
            inst.id,
            state=InstanceState.STOPPED,
            last_exit=_describe_exit(status.exit_code, status.signal),
        )

    threads = [threading.Thread(target=stop, args=(i,), daemon=True) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _describe_exit(code: int | None, sig: int | None) -> str:
    if sig:
        return f"signal {sig}"
    return "" if code is None else f"exit code {code}"
