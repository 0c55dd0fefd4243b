"""Converge after a (re)start of the daemon (invariant 5).

Instances are re-adopted by pid + start time without restarting them. What the previous daemon
left half-done is closed: instances it was starting are stopped (they were never routed),
instances it was draining finish their drain, instances of a release that is no longer the
live one (the daemon died between switching traffic and draining) are drained and stopped,
processes it started but never recorded (instances, builds, pre-deploy commands) are found by
their env marker and stopped, and its operations are marked failed. Then the edge is adopted
or started, and services below their desired count are brought back (e.g. after `down`).
"""

from __future__ import annotations

import logging
import threading

from shipyard.builds.build import RELEASE_MARKER, release_marker
from shipyard.context import Context, log_emitter
from shipyard.records import (
    UNFINISHED_RELEASE,
    Instance,
    InstanceState,
    Operation,
    OperationKind,
    OperationStatus,
    ReleaseStatus,
    Service,
    ServiceOutcome,
)
from shipyard.route.desired import desired_table
from shipyard.run.lifecycle import drain_and_stop, handle_of, stop_all

log = logging.getLogger("shipyard.recovery")
INTERRUPTED = "interrupted: the Shipyard daemon stopped during this operation"
RECOVERED = (
    "succeeded (recovered): the Shipyard daemon stopped during this operation, after its "
    "release(s) went live"
)


def recover(ctx: Context) -> None:
    _close_operations(ctx)
    kill, drain = _classify_instances(ctx)
    adopted = [i.id for i in ctx.state.instances(states=(InstanceState.RUNNING,))]
    log.info("adopted %d running instance(s): %s", len(adopted), ", ".join(adopted) or "-")
    ctx.edge.ensure_running(desired_table(ctx.state, ctx.settings))
    stop_all(ctx, kill, grace_s=10.0)
    for inst in kill:
        if inst.state == InstanceState.RESTARTING:  # a supervisor restart was cut short: retry it
            ctx.state.update_instance(
                inst.id, state=InstanceState.CRASHED, restart_at=ctx.clock.now()
            )
    drain.extend(_superseded_instances(ctx))
    _drain_in_parallel(ctx, drain)


def _close_operations(ctx: Context) -> None:
    state = ctx.state
    for op in state.running_deploys():
        outcomes = _interrupted_outcomes(ctx, op)
        if outcomes and all(o.status == "ok" for o in outcomes.values()):
            state.add_event(op.id, RECOVERED, level="warning")
            state.finish_deploy(op.id, OperationStatus.SUCCEEDED, "", outcomes)
            continue
        state.add_event(op.id, INTERRUPTED, level="error")
        state.finish_deploy(op.id, OperationStatus.FAILED, INTERRUPTED, outcomes)
    for svc in state.services():
        for release in state.releases(svc.name):
            if release.status not in UNFINISHED_RELEASE:
                continue
            marker = release_marker(svc.name, release.number)
            for handle in ctx.runtime.find(RELEASE_MARKER, marker):
                log.warning("stopping a command left running by release %s", marker)
                ctx.runtime.stop(handle, 5.0)
            state.set_release_status(svc.name, release.number, ReleaseStatus.FAILED, INTERRUPTED)


def _interrupted_outcomes(ctx: Context, op: Operation) -> dict[str, ServiceOutcome]:
    """What an operation cut short by the daemon's death achieved, read from what is live: a
    deploy or rollback whose release went live (promotion is one transaction) succeeded for
    that service; anything else was interrupted. Scales and converges are redone by the
    supervisor and the start-up converge, so they count as interrupted."""
    if op.kind not in (OperationKind.DEPLOY, OperationKind.ROLLBACK):
        return {}
    outcomes: dict[str, ServiceOutcome] = {}
    for name in filter(None, op.target.split(",")):
        svc = ctx.state.find_service(name)
        live = ctx.state.release(name, svc.current_release) if svc and svc.current_release else None
        if (
            live is not None
            and live.live_at is not None
            and live.live_at >= op.created_at
            and (op.kind == OperationKind.ROLLBACK or live.deploy_id == op.id)
        ):
            outcomes[name] = ServiceOutcome("ok", release=live.number)
        else:
            outcomes[name] = ServiceOutcome("failed", error=INTERRUPTED, code="error")
    return outcomes


def _classify_instances(ctx: Context) -> tuple[list[Instance], list[Instance]]:
    """Returns (instances to stop now, routed instances to drain first)."""
    state = ctx.state
    kill: list[Instance] = []
    drain: list[Instance] = []
    for inst in state.instances():
        alive = inst.pid is not None and ctx.runtime.alive(handle_of(inst))
        if inst.pid is None or not alive:
            for handle in ctx.runtime.find("RENDER_INSTANCE_ID", inst.id):
                ctx.runtime.stop(handle, 5.0)  # started, but its pid was never recorded
        if inst.state in (InstanceState.RUNNING, InstanceState.CRASHED):
            if not alive and inst.state == InstanceState.RUNNING:
                state.update_instance(
                    inst.id,
                    state=InstanceState.CRASHED,
                    last_exit="gone after restart",
                    restart_at=ctx.clock.now(),
                )
        elif not alive:
            final = {"starting": "failed", "restarting": "crashed"}.get(inst.state, "stopped")
            state.update_instance(inst.id, state=final, restart_at=ctx.clock.now())
        elif inst.state == InstanceState.DRAINING:
            drain.append(inst)  # stays routed in drain state until idle
        else:  # starting (never routed), restarting, stopping
            kill.append(inst)
            state.update_instance(inst.id, state=InstanceState.STOPPING)
    return kill, drain


def _superseded_instances(ctx: Context) -> list[Instance]:
    """Routed instances of a release that is not the live one any more."""
    current = {s.name: s.current_release for s in ctx.state.services()}
    return [
        i
        for i in ctx.state.instances(states=(InstanceState.RUNNING, InstanceState.CRASHED))
        if i.release != current.get(i.service)
    ]


def _drain_in_parallel(ctx: Context, instances: list[Instance]) -> None:
    by_service: dict[str, list[Instance]] = {}
    for inst in instances:
        by_service.setdefault(inst.service, []).append(inst)

    def finish(svc: Service, group: list[Instance]) -> None:
        log.info("finishing the drain of %s", ", ".join(i.id for i in group))
        drain_and_stop(ctx, svc, group, log_emitter(log))

    threads = [
        threading.Thread(target=finish, args=(ctx.state.service(name), group), daemon=True)
        for name, group in by_service.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
