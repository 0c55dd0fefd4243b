"""Read models for the API: services with their instances, releases, deploys. No secrets:
env vars are listed by key only."""

from __future__ import annotations

import json
from typing import Any

from shipyard.controlplane.context import Context
from shipyard.controlplane.state import Instance

RELEASE_FIELDS = (
    "number",
    "status",
    "reason",
    "created_at",
    "finished_at",
    "live_at",
    "config_digest",
    "git_commit",
    "git_branch",
    "source",
    "deploy_id",
    "deployable",
    "pruned",
)


def instance_view(ctx: Context, inst: Instance) -> dict[str, Any]:
    now = ctx.clock.now()
    return {
        "id": inst.id,
        "release": inst.release,
        "state": inst.state,
        "port": inst.port,
        "pid": inst.pid,
        "restarts": inst.restarts,
        "last_exit": inst.last_exit,
        "crash_loop": ctx.policy.crash_looping(inst.crash_times, now),
        "restart_in": max(0.0, (inst.restart_at or now) - now) if inst.state == "crashed" else None,
        "started_at": inst.started_at,
    }


def service_view(ctx: Context, svc: dict[str, Any], busy: bool) -> dict[str, Any]:
    spec = json.loads(svc["spec_json"])
    instances = [instance_view(ctx, i) for i in ctx.state.instances(svc["name"])]
    running = sum(1 for i in instances if i["state"] == "running")
    view: dict[str, Any] = {
        "name": svc["name"],
        "type": svc["type"],
        "runtime": spec.get("runtime"),
        "blueprint": svc["blueprint_path"],
        "current_release": svc["current_release"],
        "desired_instances": svc["desired_instances"],
        "running_instances": running,
        "status": _status(svc, instances, running, busy),
        "env_keys": sorted(str(e["key"]) for e in spec.get("env_vars", ()) if e.get("key")),
        "instances": instances,
    }
    if svc["type"] == "web":
        view["url"] = ctx.settings.public_url(svc["name"])
        view["domains"] = list(spec.get("domains", ()))
    if svc["internal_port"] is not None:
        view["internal_hostport"] = f"127.0.0.1:{svc['internal_port']}"
    return view


def _status(svc: dict[str, Any], instances: list[dict[str, Any]], running: int, busy: bool) -> str:
    if busy:
        return "deploying"
    if svc["current_release"] is None:
        return "not deployed"
    if any(i["crash_loop"] for i in instances):
        return "crash-loop"
    if running >= svc["desired_instances"]:
        return "live"
    return "degraded" if running else "down"


def release_view(row: dict[str, Any], current: int | None) -> dict[str, Any]:
    view = {k: row[k] for k in RELEASE_FIELDS}
    view["current"] = row["number"] == current
    return view
