"""The datastore part of a plan: which datastores a deploy creates, updates or leaves
unchanged, which it keeps (declared before, absent now: never deleted), and the changes it
refuses (type, databaseName, user, primary, a major version: fixed once created)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shipyard.blueprint.spec import AllowedSource, BackupPolicy, DatastoreSpec
from shipyard.plan.plan import (
    DATASTORE_FIELDS,
    DatastorePlan,
    DatastoreStep,
    datastore_changes,
    datastore_problems,
    plan_datastores,
)

DB = DatastoreSpec(
    name="app-db", kind="postgres", plan="basic-1gb", database_name="app", user="app_user",
    version="16",
)  # fmt: skip
KV = DatastoreSpec(name="cache", kind="keyvalue", plan="starter", maxmemory_policy="noeviction")
REPLICA = replace(DB, name="app-db-ro", primary="app-db")


# --- changes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "changed", "expected"),
    [
        (DB, {"plan": "pro-4gb"}, ("plan",)),
        (DB, {"ip_allow_list": (AllowedSource("10.0.0.0/8"),)}, ("ipAllowList",)),
        (DB, {"backups": BackupPolicy(retention_days=7)}, ("backups",)),
        (DB, {"disk_size_gb": 20}, ("diskSizeGB",)),
        (DB, {"read_replicas": ("app-db-ro",)}, ("readReplicas",)),
        (KV, {"maxmemory_policy": "allkeys-lru"}, ("maxmemoryPolicy",)),
        (
            DB,
            {"plan": "pro-4gb", "disk_size_gb": 50, "backups": BackupPolicy(offsite=False)},
            ("plan", "backups", "diskSizeGB"),  # in DATASTORE_FIELDS order
        ),
        (DB, {}, ()),
    ],
)
def test_changes_in_blueprint_spelling(
    old: DatastoreSpec, changed: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert datastore_changes(replace(old, **changed), old) == expected


def test_a_new_allow_list_description_is_a_change() -> None:
    old = replace(DB, ip_allow_list=(AllowedSource("10.0.0.0/8", "office"),))
    new = replace(DB, ip_allow_list=(AllowedSource("10.0.0.0/8", "the office"),))
    assert datastore_changes(new, old) == ("ipAllowList",)


def test_fixed_fields_are_not_reported_as_changes() -> None:
    """What cannot change is a problem (datastore_problems), never an update."""
    new = replace(DB, database_name="other", user="other_user", version="17", primary="x")
    assert datastore_changes(new, DB) == ()
    assert set(DATASTORE_FIELDS.values()).isdisjoint({"databaseName", "user", "type"})


# --- problems -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "field", "old_value", "new_value"),
    [
        ({"database_name": "other"}, "databaseName", "'app'", "'other'"),
        ({"user": "someone"}, "user", "'app_user'", "'someone'"),
        ({"primary": "elsewhere"}, "primary", "None", "'elsewhere'"),
        ({"kind": "keyvalue"}, "type", "'postgres'", "'keyvalue'"),
    ],
)
def test_fixed_fields_cannot_change(
    changed: dict[str, Any], field: str, old_value: str, new_value: str
) -> None:
    problems = datastore_problems(replace(DB, **changed), DB, "16")
    assert problems == [
        f"database 'app-db': {field} is {old_value} in Shipyard and {new_value} in the "
        "Blueprint; it cannot change once created (restore into a new database with "
        "`shipyard db restore --as` instead)"
    ]


def test_a_replica_cannot_become_a_primary() -> None:
    problems = datastore_problems(replace(REPLICA, primary=None), REPLICA, "16")
    assert len(problems) == 1
    assert problems[0].startswith("database 'app-db-ro': primary is 'app-db' in Shipyard and None")


def test_a_key_value_problem_names_a_key_value() -> None:
    problems = datastore_problems(replace(KV, kind="postgres"), KV, "7")
    assert len(problems) == 1
    assert problems[0].startswith("Key Value 'cache': type is 'keyvalue' in Shipyard and ")
    assert "'postgres' in the Blueprint" in problems[0]


def test_every_fixed_field_is_reported_at_once() -> None:
    new = replace(DB, database_name="d2", user="u2", primary="p", version="17")
    problems = datastore_problems(new, DB, "16")
    assert [p.split(": ")[1].split(" ")[0] for p in problems] == [
        "databaseName", "user", "primary", "postgresMajorVersion",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("wanted", "running", "refused"),
    [
        ("16", "16", False),
        (None, "16", False),  # no version: whatever the database runs
        ("17", "16", True),  # a major upgrade in place
        ("15", "16", True),  # a downgrade
    ],
)
def test_major_version(wanted: str | None, running: str, refused: bool) -> None:
    problems = datastore_problems(replace(DB, version=wanted), replace(DB, version=None), running)
    if refused:
        assert problems == [
            f"database 'app-db': postgresMajorVersion is {running} in Shipyard and {wanted} in "
            "the Blueprint; a major upgrade in place is not supported yet: restore into a new "
            "database instead"
        ]
    else:
        assert problems == []


def test_the_version_of_a_key_value_is_not_checked() -> None:
    assert datastore_problems(replace(KV, version="8"), KV, "7") == []


def test_the_running_version_counts_not_the_stored_spec() -> None:
    """The spec stored "16" but the database runs 15 (restored from an older one): 16 in the
    Blueprint is a major change."""
    assert len(datastore_problems(DB, DB, "15")) == 1


def test_no_problems_for_changeable_fields() -> None:
    new = replace(DB, plan="pro-8gb", disk_size_gb=100, ip_allow_list=(AllowedSource("::/0"),))
    assert datastore_problems(new, DB, "16") == []


# --- plan_datastores ------------------------------------------------------------------------


def test_plan_of_a_first_deploy_creates_everything_in_order() -> None:
    plan = plan_datastores([DB, REPLICA, KV], {})
    assert plan == DatastorePlan(
        steps=(
            DatastoreStep("app-db", "postgres", "create"),
            DatastoreStep("app-db-ro", "postgres", "create"),
            DatastoreStep("cache", "keyvalue", "create"),
        ),
        kept=(),
        problems=(),
    )


def test_plan_create_update_unchanged() -> None:
    existing = {"app-db": (replace(DB, plan="basic-256mb"), "16"), "cache": (KV, "7")}
    plan = plan_datastores([DB, KV, REPLICA], existing)
    assert plan.steps == (
        DatastoreStep("app-db", "postgres", "update", ("plan",)),
        DatastoreStep("cache", "keyvalue", "unchanged"),
        DatastoreStep("app-db-ro", "postgres", "create"),
    )
    assert plan.problems == () and plan.kept == ()


def test_plan_keeps_datastores_the_blueprint_no_longer_declares() -> None:
    existing = {"app-db": (DB, "16"), "old": (KV, "7"), "cache": (KV, "7")}
    plan = plan_datastores([DB], existing, declared_here=["zeta", "app-db", "old", "cache"])
    assert plan.kept == ("cache", "old", "zeta")  # sorted; never deleted
    assert [s.name for s in plan.steps] == ["app-db"]


def test_plan_ignores_datastores_of_other_blueprints() -> None:
    existing = {"app-db": (DB, "16"), "theirs": (KV, "7")}
    plan = plan_datastores([DB], existing, declared_here=["app-db"])
    assert plan.kept == ()
    assert plan.steps == (DatastoreStep("app-db", "postgres", "unchanged"),)


def test_plan_collects_every_problem_and_still_lists_the_step() -> None:
    existing = {"app-db": (DB, "16"), "cache": (KV, "7")}
    new_db = replace(DB, user="renamed", plan="pro-4gb", version="17")
    new_kv = replace(KV, kind="postgres")
    plan = plan_datastores([new_db, new_kv], existing)
    assert len(plan.problems) == 3
    assert "user is 'app_user' in Shipyard and 'renamed'" in plan.problems[0]
    assert "postgresMajorVersion is 16 in Shipyard and 17" in plan.problems[1]
    assert plan.problems[2].startswith("Key Value 'cache': type is 'keyvalue'")
    assert plan.steps[0] == DatastoreStep("app-db", "postgres", "update", ("plan",))
    # the step carries the Blueprint's kind
    assert plan.steps[1] == DatastoreStep("cache", "postgres", "unchanged")


def test_plan_of_nothing() -> None:
    assert plan_datastores([], {}) == DatastorePlan()
