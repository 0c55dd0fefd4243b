"""The rollout executor: runs the steps of a strategy (``rollout/strategy.py``) for one
release, and its compensations when a step fails.

Invariant 3: a failed start, health check or switch leaves the current release serving (or,
for ``recreate``, serving again) — new instances are never routed before they pass their own
health check; with ``surge`` old ones are drained only after the new ones are UP in HAProxy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace

from shipyard.blueprint.spec import ServiceSpec
from shipyard.context import Context, Emit
from shipyard.errors import DeployFailed, EdgeError, ShipyardError
from shipyard.records import (
    OF_RELEASE,
    UNFINISHED_RELEASE,
    Instance,
    InstanceState,
    Release,
    ReleaseStatus,
    Service,
)
from shipyard.release.retention import releases_to_prune
from shipyard.release.store import release_paths
from shipyard.rollout.strategy import (
    RECREATE,
    SURGE,
    Step,
    Strategy,
    Undo,
    compensation,
    next_step,
)
from shipyard.route.desired import sync_routes
from shipyard.run.lifecycle import (
    abandon,
    drain_and_stop,
    start_many,
    sync_quietly,
    wait_edge_up,
    wait_healthy,
)


def target_count(svc: Service, spec: ServiceSpec, from_blueprint: bool) -> int:
    """Instances the new release runs: the Blueprint's numInstances when it is new or changed,
    otherwise the current (possibly manually scaled) count."""
    wanted = spec.num_instances
    if from_blueprint and (svc.current_release is None or wanted != svc.blueprint_instances):
        return wanted
    return max(1, svc.desired_instances)


def rollout(
    ctx: Context, release: Release, emit: Emit, *, previous_status: ReleaseStatus,
    from_blueprint: bool, strategy: Strategy | None = None,
) -> None:  # fmt: skip
    """Roll ``release`` out by the steps of ``strategy`` (default: chosen for the service, see
    :func:`choose_strategy`); on a failure, undo what the table says, then raise DeployFailed.
    The release that was live keeps serving, or serves again."""
    run = _Rollout(ctx, release, emit, previous_status, from_blueprint)
    chosen = strategy or choose_strategy(ctx, run.before, run.old)
    if chosen is not SURGE:
        emit(f"release {release.number}: {chosen.name} rollout: {chosen.summary}", "warning")
    done: tuple[Step, ...] = ()
    ctx.state.set_release_status(release.service, release.number, ReleaseStatus.DEPLOYING)
    while (step := next_step(chosen, done)) is not None:
        try:
            run.do(step)
        except ShipyardError as exc:
            failure = exc if isinstance(exc, DeployFailed) else run.failed(exc.message)
            for undo in compensation(chosen, done, step):
                run.undo(undo, failure.message)
            ctx.state.set_release_status(
                release.service, release.number, ReleaseStatus.FAILED, run.reason or exc.message
            )
            raise failure from exc
        done = (*done, step)
    emit(f"release {release.number} is live", "info")
    prune_releases(ctx, release.service)


def choose_strategy(ctx: Context, live: Service, old: list[Instance]) -> Strategy:
    """``recreate`` when the live instances listen on a fixed port instead of $PORT (two
    generations cannot bind it side by side on one network) or the service has a disk (one
    writer at a time), else ``surge``."""
    if any(i.fixed_port for i in old) or live.spec.disk is not None:
        return RECREATE
    return SURGE


class _Rollout:
    """The effects behind each step and each compensation, for one service's rollout."""

    def __init__(
        self, ctx: Context, release: Release, emit: Emit, previous_status: ReleaseStatus,
        from_blueprint: bool,
    ) -> None:  # fmt: skip
        self.ctx, self.release, self.emit = ctx, release, emit
        self.name, self.number = release.service, release.number
        self.before = ctx.state.service(self.name)  # as live: restored as-is on failure
        self.new_svc = replace(self.before, spec=release.spec)
        self.desired = target_count(self.before, release.spec, from_blueprint)
        self.old = ctx.state.instances(self.name, states=OF_RELEASE)
        self.new: list[Instance] = []
        self.previous_status = previous_status
        self.from_blueprint = from_blueprint
        self.reason = ""
        self.retired = False  # the old instances were stopped (recreate)

    def failed(self, why: str) -> DeployFailed:
        return DeployFailed(
            f"{self.name}: {why}; the current release keeps serving.",
            fields={"service": self.name, "release": self.number},
        )

    def do(self, step: Step) -> None:
        effects: dict[Step, Callable[[], None]] = {
            Step.START_NEW: self._start_new,
            Step.WAIT_HEALTHY: self._wait_healthy,
            Step.PROMOTE: self._promote,
            Step.ROUTE_NEW: self._route_new,
            Step.RETIRE_OLD: self._retire_old,
        }
        effects[step]()

    def undo(self, undo: Undo, why: str) -> None:
        effects: dict[Undo, Callable[[str], None]] = {
            Undo.ABANDON_NEW: self._undo_abandon_new,
            Undo.UNROUTE_NEW: self._undo_unroute_new,
            Undo.UNPROMOTE: self._undo_unpromote,
            Undo.RESTORE_OLD: self._undo_restore_old,
        }
        effects[undo](why)

    # steps -------------------------------------------------------------------------------
    def _start_new(self) -> None:
        beside = f" beside {len(self.old)} running" if self.old and not self.retired else ""
        self.emit(f"release {self.number}: starting {self.desired} instance(s){beside}", "info")
        try:
            self.new = start_many(self.ctx, self.before, self.release, self.desired)
        except ShipyardError as exc:
            self.reason = exc.message
            raise self.failed(f"could not start release {self.number}: {exc.message}") from exc

    def _wait_healthy(self) -> None:
        failures = wait_healthy(self.ctx, self.new_svc, self.new, self.emit)
        if failures:
            self.reason = "; ".join(f.reason for f in failures)
            raise DeployFailed(
                f"{self.name}: release {self.number} failed to start, no request reached it "
                "and the current release keeps serving:\n"
                + "\n".join("  " + f.describe() for f in failures),
                fields={"service": self.name, "release": self.number},
            )

    def _promote(self) -> None:
        for inst in self.new:
            self.ctx.state.transition(
                inst.id, (InstanceState.STARTING,), state=InstanceState.RUNNING
            )
        self.ctx.state.promote(
            self.name, self.number, self.previous_status, self.release.spec,
            self.desired if self.from_blueprint else None,
        )  # fmt: skip

    def _route_new(self) -> None:
        try:
            sync_routes(self.ctx)
        except EdgeError as exc:
            self.reason = f"HAProxy could not be updated ({exc.message})"
        else:
            laggards = wait_edge_up(self.ctx, self.new_svc, self.new)
            if laggards:
                self.reason = f"HAProxy's health check did not mark {', '.join(laggards)} UP"
        if self.reason:
            raise DeployFailed(
                f"{self.name}: {self.reason}; release {self.number} was taken out again and the "
                "current release keeps serving.",
                fields={"service": self.name, "release": self.number},
            )

    def _retire_old(self) -> None:
        if not self.old:
            return
        verb = "stopping" if self.before.type == "worker" else "draining"
        self.emit(f"release {self.number}: {verb} {len(self.old)} old instance(s)", "info")
        drain_and_stop(self.ctx, self.before, self.old, self.emit)
        self.retired = True

    # compensations -----------------------------------------------------------------------
    def _undo_abandon_new(self, why: str) -> None:
        abandon(self.ctx, self.new)

    def _undo_unroute_new(self, why: str) -> None:
        sync_quietly(self.ctx, self.emit)
        drain_and_stop(self.ctx, self.new_svc, self.new, self.emit)  # routed: drain them
        for inst in self.new:
            self.ctx.state.update_instance(inst.id, state=InstanceState.FAILED)

    def _undo_unpromote(self, why: str) -> None:
        self.ctx.state.unpromote(self.before, self.number, self.reason or why)
        sync_quietly(self.ctx, self.emit)

    def _undo_restore_old(self, why: str) -> None:
        """Start the live release's instances again (its old ones were stopped first)."""
        if self.before.current_release is None or not self.old:
            return
        live = self.ctx.state.release(self.name, self.before.current_release)
        self.emit(f"restarting release {live.number}, which was stopped for this rollout",
                  "warning")  # fmt: skip
        back = start_many(self.ctx, self.before, live, len(self.old))
        failures = wait_healthy(self.ctx, self.before, back, self.emit)
        failed = {f.instance for f in failures}
        for inst in back:
            # healthy ones are routed again; the others go to the supervisor, which restarts
            # them with backoff like any crashed instance
            self.ctx.state.transition(
                inst.id, (InstanceState.STARTING,),
                state=InstanceState.CRASHED if inst.id in failed else InstanceState.RUNNING,
                restart_at=self.ctx.clock.now(),
            )  # fmt: skip
        sync_quietly(self.ctx, self.emit)
        if failures:
            self.emit(f"release {live.number} did not come back healthy: "
                      + "; ".join(f.reason for f in failures), "error")  # fmt: skip


def prune_releases(ctx: Context, service: str) -> None:
    """Remove the artifacts of releases past the retention (their build logs stay)."""
    current = ctx.state.service(service).current_release
    releases = ctx.state.releases(service)
    doomed = set(releases_to_prune(releases, current))
    # an artifact shared with a release that stays (an env change's, or another service's
    # that `shipyard promote` made from it) stays too
    shared = {r.dir for r in releases if r.number not in doomed and not r.pruned}
    if doomed:
        shared |= {r.dir for other in ctx.state.services() if other.name != service
                   for r in ctx.state.releases(other.name) if not r.pruned}  # fmt: skip
    for release in releases:
        if release.number not in doomed:
            continue
        ctx.state.mark_pruned(service, release.number)  # first: never deployable without one
        if release.dir in shared:
            continue
        paths = release_paths(ctx.settings.services_dir, service, release.number)
        shutil.rmtree(paths.app, ignore_errors=True)
        shutil.rmtree(paths.venv, ignore_errors=True)


def fail_unfinished_releases(ctx: Context, service: str, reason: str) -> None:
    for release in ctx.state.releases(service):
        if release.status in UNFINISHED_RELEASE:
            ctx.state.set_release_status(service, release.number, ReleaseStatus.FAILED, reason)
