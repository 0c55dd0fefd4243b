"""Manual scaling (and convergence after a restart): add health-checked instances or drain
extra ones, always of the live release."""

from __future__ import annotations

from shipyard.context import Context, Emit
from shipyard.errors import Conflict, DeployFailed, ShipyardError
from shipyard.records import OF_RELEASE, Instance, InstanceState
from shipyard.run.lifecycle import (
    abandon,
    drain_and_stop,
    start_many,
    sync_quietly,
    wait_edge_up,
    wait_healthy,
)


def scale_to(ctx: Context, service: str, count: int, emit: Emit, *, persist: bool) -> None:
    svc = ctx.state.service(service)
    if svc.current_release is None:
        raise Conflict(f"{service} has no live release yet; deploy it before scaling.")
    release = ctx.state.release(service, svc.current_release)
    current = [
        i
        for i in ctx.state.instances(service, states=OF_RELEASE)
        if i.release == svc.current_release
    ]
    previous_desired = svc.desired_instances
    if persist:
        ctx.state.set_desired(service, count)
    if count > len(current):
        emit(f"starting {count - len(current)} instance(s) of release {release.number}", "info")
        try:
            new = start_many(ctx, svc, release, count - len(current))
        except ShipyardError:
            if persist:
                ctx.state.set_desired(service, previous_desired)
            raise
        failures = wait_healthy(ctx, svc, new, emit)
        if failures:
            abandon(ctx, new)
            if persist:
                ctx.state.set_desired(service, previous_desired)
            raise DeployFailed(
                f"{service}: scaling up failed; nothing changed:\n"
                + "\n".join("  " + f.describe() for f in failures)
            )
        for inst in new:
            ctx.state.transition(inst.id, (InstanceState.STARTING,), state=InstanceState.RUNNING)
        sync_quietly(ctx, emit)
        laggards = wait_edge_up(ctx, svc, new)
        if laggards:
            emit(f"HAProxy has not marked {', '.join(laggards)} UP yet; it keeps checking",
                 "warning")  # fmt: skip
        emit(f"{service} now runs {count} instance(s)", "info")
    elif count < len(current):
        extra = _pick_extra(current, len(current) - count)
        emit(f"draining {len(extra)} instance(s): {', '.join(i.id for i in extra)}", "info")
        drain_and_stop(ctx, svc, extra, emit)
        emit(f"{service} now runs {count} instance(s)", "info")
    else:
        emit(f"{service} already runs {count} instance(s)", "info")


def _pick_extra(instances: list[Instance], n: int) -> list[Instance]:
    """Crashed ones first, then the newest."""
    ranked = sorted(instances, key=lambda i: (i.state == InstanceState.RUNNING, -i.created_at))
    return ranked[:n]
