"""`shipyard deploy --prune`: the services a Blueprint no longer lists are removed (its owner
confirmed it; without --prune they are only reported). Instances drained and stopped, routes
removed, rows and release files deleted. A service's persistent disk is kept (nothing is lost:
`shipyard disk` still lists its snapshots) and datastores are never pruned (`shipyard db
delete` does that, keeping backups)."""

from __future__ import annotations

import shutil

from shipyard.context import Context, Emit
from shipyard.records import InstanceState
from shipyard.route.desired import sync_routes
from shipyard.run.lifecycle import drain_and_stop

_LIVE = (InstanceState.STARTING, InstanceState.RUNNING, InstanceState.DRAINING,
         InstanceState.RESTARTING, InstanceState.STOPPING)  # fmt: skip

_ROWS = (
    ("instances", "service"),
    ("releases", "service"),
    ("generated_values", "service"),
    ("env_values", "scope"),
    ("service_sources", "service"),
    ("service_hooks", "service"),
    ("services", "name"),
)


def prune_service(ctx: Context, name: str, emit: Emit) -> None:
    svc = ctx.state.service(name)
    instances = [i for i in ctx.state.instances(name) if i.state in _LIVE]
    drain_and_stop(ctx, svc, instances, emit)
    db = getattr(ctx.state, "db")  # noqa: B009 - the SQLite state (State), not the protocol
    with db.tx() as conn:
        for table, column in _ROWS:
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))
    sync_routes(ctx)
    shutil.rmtree(ctx.settings.services_dir / name / "releases", ignore_errors=True)
    kept = " (its disk is kept)" if svc.spec.disk else ""
    emit(f"removed {name}: it is no longer in the Blueprint (--prune){kept}", "info")
