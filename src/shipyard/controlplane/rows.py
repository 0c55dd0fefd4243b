"""SQLite rows -> typed records (records.py). Rows come as plain dicts from db.py."""

from __future__ import annotations

import json
from typing import Any

from shipyard.blueprint.spec import ServiceSpec
from shipyard.records import (
    Instance,
    InstanceState,
    Operation,
    OperationKind,
    OperationStatus,
    Release,
    ReleaseStatus,
    Service,
    ServiceOutcome,
)


def service_row(row: dict[str, Any]) -> Service:
    return Service(
        name=row["name"],
        type=row["type"],
        spec=ServiceSpec.from_json(row["spec_json"]),
        blueprint_path=row["blueprint_path"],
        desired_instances=int(row["desired_instances"]),
        blueprint_instances=int(row["blueprint_instances"]),
        internal_port=row["internal_port"],
        current_release=row["current_release"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        environment=row.get("environment"),
        base_name=row.get("base_name"),
    )


def release_row(row: dict[str, Any]) -> Release:
    return Release(
        service=row["service"],
        number=int(row["number"]),
        status=ReleaseStatus(row["status"]),
        reason=row["reason"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        live_at=row["live_at"],
        config_digest=row["config_digest"],
        git_commit=row["git_commit"],
        git_branch=row["git_branch"],
        source=row["source"],
        dir=row["dir"],
        spec=ServiceSpec.from_json(row["spec_json"]),
        env_enc=bytes(row["env_enc"]),
        deploy_id=row["deploy_id"],
        deployable=bool(row["deployable"]),
        pruned=bool(row["pruned"]),
    )


def instance_row(row: dict[str, Any]) -> Instance:
    return Instance(
        id=row["id"],
        service=row["service"],
        release=int(row["release"]),
        port=int(row["port"]),
        pid=row["pid"],
        start_time=row["start_time"],
        state=InstanceState(row["state"]),
        restarts=int(row["restarts"]),
        last_exit=row["last_exit"],
        restart_at=row["restart_at"],
        crash_times=tuple(json.loads(row["crash_times"])),
        log_path=row["log_path"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        assigned_port=row["assigned_port"],
    )


def operation_row(row: dict[str, Any]) -> Operation:
    result = {
        name: ServiceOutcome(**outcome) for name, outcome in json.loads(row["result_json"]).items()
    }
    return Operation(
        id=int(row["id"]),
        kind=OperationKind(row["kind"]),
        target=row["target"],
        status=OperationStatus(row["status"]),
        error=row["error"],
        error_code=row["error_code"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        result=result,
    )
