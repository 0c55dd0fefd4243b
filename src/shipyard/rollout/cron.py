"""Going live for a cron job: it has no instance to start, drain or route, so a release goes
live by becoming the service's current release (one transaction, ``Store.promote``). A run in
progress is never touched: it finishes with the release it started with, and the next run
(run/cron.py) executes the new one."""

from __future__ import annotations

from shipyard.context import Context, Emit
from shipyard.records import Release, ReleaseStatus
from shipyard.rollout.execute import prune_releases, rollout


def release_cron(
    ctx: Context, release: Release, emit: Emit, *, previous_status: ReleaseStatus,
    from_blueprint: bool,
) -> None:  # fmt: skip
    """Make ``release`` of a cron job live (deploy, rollback): the same signature as
    :func:`~shipyard.rollout.execute.rollout`, which it stands in for."""
    name, number = release.service, release.number
    ctx.state.set_release_status(name, number, ReleaseStatus.DEPLOYING)
    ctx.state.promote(name, number, previous_status, release.spec, 0 if from_blueprint else None)
    emit(
        f"release {number} is live: the cron job runs it from its next run "
        f"(schedule '{release.spec.schedule}', UTC); a run in progress finishes with the "
        "release it started with",
        "info",
    )
    prune_releases(ctx, name)


def go_live(
    ctx: Context, release: Release, emit: Emit, *, previous_status: ReleaseStatus,
    from_blueprint: bool,
) -> None:  # fmt: skip
    """``rollout`` for services, ``release_cron`` for cron jobs."""
    step = release_cron if release.spec.type == "cron" else rollout
    step(ctx, release, emit, previous_status=previous_status, from_blueprint=from_blueprint)
