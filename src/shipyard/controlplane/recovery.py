"""Converge after a (re)start of the daemon (invariant 5).

Instances are re-adopted by pid + start time without restarting them; operations that the
previous daemon left half-done are closed: instances it was starting are stopped (they were
never routed), instances it was draining are drained and stopped, and their deploys are marked
failed. Then the edge is adopted or started, and services below their desired count are
brought back up (e.g. after `shipyard down`).
"""

from __future__ import annotations

import logging

from shipyard.controlplane.context import Context
from shipyard.controlplane.instances import handle_of, stop_all, wait_idle
from shipyard.controlplane.routing import desired_table, sync_routes

log = logging.getLogger("shipyard.recovery")
INTERRUPTED = "interrupted: the Shipyard daemon stopped during this operation"


def recover(ctx: Context) -> None:
    state = ctx.state
    for deploy in state.running_deploys():
        state.add_event(deploy["id"], INTERRUPTED, level="error")
        state.finish_deploy(deploy["id"], "failed", INTERRUPTED, {})
    for svc in state.services():
        for release in state.releases(svc["name"]):
            if release["status"] in ("building", "built", "deploying"):
                state.set_release_status(svc["name"], release["number"], "failed", INTERRUPTED)
    kill, drain = [], []
    for inst in state.instances():
        alive = inst.pid is not None and ctx.runtime.alive(handle_of(inst))
        if inst.state in ("running", "crashed"):
            if not alive and inst.state == "running":
                state.update_instance(
                    inst.id,
                    state="crashed",
                    last_exit="gone after restart",
                    restart_at=ctx.clock.now(),
                )
        elif not alive:
            final = {"starting": "failed", "restarting": "crashed"}.get(inst.state, "stopped")
            state.update_instance(inst.id, state=final, restart_at=ctx.clock.now())
        elif inst.state == "draining":
            drain.append(inst)  # stays routed in drain state until idle
        else:  # starting (never routed), restarting, stopping
            kill.append(inst)
            state.update_instance(inst.id, state="stopping")
    adopted = [i.id for i in state.instances(states=("running",))]
    log.info("adopted %d running instance(s): %s", len(adopted), ", ".join(adopted) or "-")
    ctx.edge.ensure_running(desired_table(state, ctx.settings))
    stop_all(ctx, kill, grace_s=10.0)
    for inst in kill:
        if inst.state == "restarting":  # supervisor's restart was cut short: retry it
            state.update_instance(inst.id, state="crashed", restart_at=ctx.clock.now())
    for inst in drain:
        wait_idle(ctx, inst.service, [inst.id], ctx.settings.drain_timeout_s)
        state.update_instance(inst.id, state="stopping")
    if drain:
        sync_routes(ctx)
        stop_all(ctx, drain, grace_s=10.0)
