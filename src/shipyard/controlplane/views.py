"""Read models for the API (apimodels.py) built from state records. No secrets: env vars are
listed by key only."""

from __future__ import annotations

import os

from shipyard.apimodels import (
    DatastoreStepView,
    EventsPage,
    EventView,
    InstanceView,
    NoticeView,
    OperationView,
    OutcomeView,
    PlanStepView,
    PlanView,
    ReleaseView,
    ServiceDiskView,
    ServiceStatus,
    ServiceView,
)
from shipyard.context import Context
from shipyard.controlplane.cronviews import cron_job_view
from shipyard.data import disks
from shipyard.plan.plan import Plan
from shipyard.records import (
    Event,
    Instance,
    InstanceState,
    Operation,
    Release,
    ReleaseStatus,
    Service,
)
from shipyard.source.open import Source


def instance_view(ctx: Context, inst: Instance) -> InstanceView:
    now = ctx.clock.now()
    crashed = inst.state == InstanceState.CRASHED
    down = crashed or inst.state == InstanceState.RESTARTING
    recent = len(ctx.policy.recent(inst.crash_times, now))
    looping = down and ctx.policy.crash_looping(inst.crash_times, now)
    return InstanceView(
        id=inst.id,
        release=inst.release,
        state=inst.state,
        port=inst.port,
        pid=inst.pid,
        restarts=inst.restarts,
        recent_restarts=recent,
        last_exit=inst.last_exit,
        crash_loop=looping,
        restart_in=max(0.0, (inst.restart_at or now) - now) if crashed else None,
        started_at=inst.started_at,
        summary=_instance_summary(inst.state, recent, looping, ctx.policy.window_s),
    )


def _instance_summary(state: str, recent: int, looping: bool, window_s: float) -> str:
    text = f"{state} (crash loop)" if looping else state
    if recent:
        minutes = f"{window_s / 60:g} min"
        text += f", {recent} restart{'s' if recent > 1 else ''} in the last {minutes}"
    return text


def service_view(ctx: Context, svc: Service, busy: bool) -> ServiceView:
    instances = [instance_view(ctx, i) for i in ctx.state.instances(svc.name)]
    running = sum(1 for i in instances if i.state == InstanceState.RUNNING)
    web = svc.type == "web"
    failure = _newest_failure(ctx, svc)
    return ServiceView(
        name=svc.name,
        type=svc.type,
        runtime=svc.spec.runtime,
        blueprint=svc.blueprint_path,
        current_release=svc.current_release,
        desired_instances=svc.desired_instances,
        running_instances=running,
        status=_status(svc, instances, running, busy, failure),
        never_served=not svc.deployed and failure is not None,
        last_failure=failure,
        env_keys=svc.spec.env_keys,
        instances=instances,
        url=ctx.settings.public_url(svc.name) if web else None,
        domains=list(svc.spec.domains) if web else None,
        internal_hostport=(
            f"127.0.0.1:{svc.internal_port}" if svc.internal_port is not None else None
        ),
        disk=_disk(ctx, svc),
        cron=cron_job_view(ctx, svc) if svc.type == "cron" else None,
        environment=svc.environment,
        base_name=svc.base_name,
    )


def _disk(ctx: Context, svc: Service) -> ServiceDiskView | None:
    disk = svc.spec.disk
    if disk is None or ctx.volumes is None:
        return None
    _image, mountpoint = disks.location(ctx, svc.name, disk)
    return ServiceDiskView(
        name=disk.name, mount_path=disk.mount_path, size_gb=disk.size_gb,
        used_bytes=ctx.volumes.usage(mountpoint), enforced=os.path.ismount(mountpoint),
    )  # fmt: skip


_FAILED = (ReleaseStatus.BUILD_FAILED, ReleaseStatus.FAILED)


def _newest_failure(ctx: Context, svc: Service) -> str | None:
    """The reason the newest release failed, if it is newer than the live one."""
    releases = ctx.state.releases(svc.name)
    if not releases:
        return None
    newest = max(releases, key=lambda r: r.number)
    if newest.status not in _FAILED or newest.number < (svc.current_release or 0):
        return None
    return f"release {newest.number} {newest.status}: {newest.reason or 'no reason recorded'}"


def _status(
    svc: Service, instances: list[InstanceView], running: int, busy: bool, failure: str | None
) -> ServiceStatus:
    if busy:
        return "deploying"
    if not svc.deployed:
        return "failed" if failure else "not deployed"
    if any(i.crash_loop for i in instances) and running < svc.desired_instances:
        return "crash-loop"
    if running >= svc.desired_instances:
        return "live"
    return "degraded" if running else "down"


def release_view(release: Release, current: int | None) -> ReleaseView:
    return ReleaseView(
        number=release.number,
        status=release.status,
        reason=release.reason,
        created_at=release.created_at,
        finished_at=release.finished_at,
        live_at=release.live_at,
        config_digest=release.config_digest,
        git_commit=release.git_commit,
        git_branch=release.git_branch,
        source=release.source,
        deploy_id=release.deploy_id,
        deployable=release.deployable,
        pruned=release.pruned,
        current=release.number == current,
    )


def operation_view(op: Operation) -> OperationView:
    return OperationView(
        id=op.id,
        kind=op.kind,
        target=op.target,
        status=op.status.value,
        error=op.error,
        error_code=op.error_code,
        created_at=op.created_at,
        finished_at=op.finished_at,
        result={name: OutcomeView(**vars(outcome)) for name, outcome in op.result.items()},
    )


def events_page(op: Operation, events: list[Event]) -> EventsPage:
    return EventsPage(
        deploy=operation_view(op),
        events=[EventView(**vars(e)) for e in events],
    )


def plan_view(source: Source, plan: Plan) -> PlanView:
    return PlanView(
        blueprint=source.blueprint_id,
        source=source.label,
        commit=source.git.commit,
        steps=[
            PlanStepView(service=s.service, type=s.type, action=s.action, changes=list(s.changes))
            for s in plan.steps
        ],
        orphans=list(plan.orphans),
        problems=list(plan.problems),
        notices=[
            NoticeView(location=n.location, path=n.path, message=n.message)
            for n in source.loaded.notices
        ],
        datastores=[
            DatastoreStepView(name=d.name, kind=d.kind, action=d.action, changes=list(d.changes))
            for d in plan.datastores.steps
        ],
        kept_datastores=list(plan.datastores.kept),
    )
