"""Datastores in the SQLite state (a real database file, a fake clock): rows added, found,
updated, renamed and removed; secrets kept as the bytes given; a taken name or port refused
with nothing changed; backup runs and restore drills recorded and listed newest first, and
moved along when a datastore is renamed."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.blueprint.spec import AllowedSource, DatastoreSpec
from shipyard.clock import FakeClock
from shipyard.controlplane.datastate import DataState
from shipyard.controlplane.db import Database
from shipyard.errors import Conflict, NotFound
from shipyard.records import BackupRun, Datastore, DatastoreStatus, Drill, RunStatus

DB = DatastoreSpec(name="app-db", kind="postgres", plan="pro-4gb", database_name="app",
                   user="app_user", version="16",
                   ip_allow_list=(AllowedSource("10.0.0.0/8", "office"),))  # fmt: skip
KV = DatastoreSpec(name="cache", kind="keyvalue", maxmemory_policy="allkeys-lru")
SECRETS = {"password": b"token-1", "backup_cipher": b"\x00\xff\x80 raw bytes"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def state(tmp_path: Path, clock: FakeClock) -> DataState:
    return DataState(Database(tmp_path / "s.db"), clock)


def add(state: DataState, spec: DatastoreSpec = DB, port: int = 5433,
        secrets: dict[str, bytes] | None = None) -> Datastore:  # fmt: skip
    return state.add_datastore(
        spec, "16" if spec.kind == "postgres" else "7", port, f"/srv/data/{spec.name}",
        "/repo/render.yaml", "blueprint", SECRETS if secrets is None else secrets,
    )  # fmt: skip


# --- rows -----------------------------------------------------------------------------------


def test_add_records_a_creating_datastore(state: DataState, clock: FakeClock) -> None:
    ds = add(state)
    assert ds == Datastore(
        name="app-db", kind="postgres", spec=DB, version="16", port=5433,
        dir="/srv/data/app-db", status=DatastoreStatus.CREATING, reason="", pid=None,
        start_time=None, blueprint_path="/repo/render.yaml", origin="blueprint", restarts=0,
        created_at=clock.now(), updated_at=clock.now(), started_at=None,
    )  # fmt: skip
    assert state.find_datastore("app-db") == ds == state.datastore("app-db")


def test_the_spec_round_trips_exactly(state: DataState) -> None:
    add(state, KV, 6380)
    assert state.datastore("cache").spec == KV
    assert state.datastore("cache").label == "Key Value 'cache'"


def test_find_and_list(state: DataState) -> None:
    assert state.find_datastore("app-db") is None
    assert state.datastores() == []
    add(state, KV, 6380)
    add(state, DB, 5433)
    add(state, replace(DB, name="Archive DB"), 5434, {})
    assert [d.name for d in state.datastores()] == ["Archive DB", "app-db", "cache"]
    assert state.datastore_ports() == {5433, 5434, 6380}


def test_an_unknown_name_is_not_found_with_the_known_ones(state: DataState) -> None:
    with pytest.raises(NotFound) as empty:
        state.datastore("nope")
    assert empty.value.message == "No database or Key Value named 'nope'. There is none yet."
    add(state)
    add(state, KV, 6380)
    with pytest.raises(NotFound) as info:
        state.datastore("nope")
    assert info.value.message == "No database or Key Value named 'nope'. Known: app-db, cache."
    assert info.value.fields == {"datastore": "nope"}


def test_update_sets_columns_and_the_time(state: DataState, clock: FakeClock) -> None:
    created = add(state)
    clock.advance(30)
    state.update_datastore(
        "app-db", status=DatastoreStatus.AVAILABLE, pid=4242, start_time=99,
        started_at=clock.now(), restarts=2, reason="ok",
    )  # fmt: skip
    ds = state.datastore("app-db")
    assert (ds.status, ds.pid, ds.start_time, ds.restarts, ds.reason) == (
        DatastoreStatus.AVAILABLE, 4242, 99, 2, "ok",
    )  # fmt: skip
    assert ds.started_at == ds.updated_at == created.created_at + 30
    assert ds.created_at == created.created_at


def test_update_replaces_the_spec(state: DataState) -> None:
    add(state)
    bigger = replace(DB, plan="pro-8gb", disk_size_gb=100)
    state.update_datastore("app-db", spec=bigger, version="17")
    ds = state.datastore("app-db")
    assert (ds.spec, ds.version) == (bigger, "17")


def test_update_refuses_unknown_columns_and_changes_nothing(
    state: DataState, clock: FakeClock
) -> None:
    before = add(state)
    clock.advance(5)
    for bad in ({"dir": "/elsewhere"}, {"kind": "keyvalue"}, {"created_at": 1.0},
                {"status": "available", "x": 1}):  # fmt: skip
        with pytest.raises(ValueError, match="not datastore columns"):
            state.update_datastore("app-db", **bad)
    assert state.datastore("app-db") == before


def test_update_of_an_unknown_datastore_adds_nothing(state: DataState) -> None:
    state.update_datastore("ghost", status=DatastoreStatus.FAILED)
    assert state.datastores() == []


# --- secrets --------------------------------------------------------------------------------


def test_secrets_are_stored_as_given(state: DataState) -> None:
    add(state)
    got = state.datastore_secrets("app-db")
    assert got == SECRETS
    assert all(type(v) is bytes for v in got.values())
    assert state.datastore_secrets("other") == {}


def test_save_a_secret_adds_or_replaces_one(state: DataState) -> None:
    add(state)
    state.save_datastore_secret("app-db", "password", b"token-2")
    state.save_datastore_secret("app-db", "replication_password", b"r")
    assert state.datastore_secrets("app-db") == {
        "password": b"token-2", "backup_cipher": SECRETS["backup_cipher"],
        "replication_password": b"r",
    }  # fmt: skip


def test_secrets_are_kept_per_datastore(state: DataState) -> None:
    add(state, DB, 5433, {"password": b"a"})
    add(state, KV, 6380, {"password": b"b"})
    assert state.datastore_secrets("app-db") == {"password": b"a"}
    assert state.datastore_secrets("cache") == {"password": b"b"}


# --- conflicts --------------------------------------------------------------------------------


def test_a_taken_name_is_a_conflict_and_changes_nothing(state: DataState, clock: FakeClock) -> None:
    first = add(state, DB, 5433, {"password": b"original"})
    clock.advance(10)
    with pytest.raises(Conflict) as info:
        add(state, replace(DB, plan="free"), 5999, {"password": b"intruder", "extra": b"x"})
    assert info.value.message == (
        "Cannot create 'app-db': a database or Key Value of that name, or one on port 5999, "
        "exists already."
    )
    assert info.value.fields == {"datastore": "app-db", "port": 5999}
    assert state.datastores() == [first]
    assert state.datastore_secrets("app-db") == {"password": b"original"}
    assert state.datastore_ports() == {5433}


def test_a_taken_port_is_a_conflict_and_changes_nothing(state: DataState) -> None:
    first = add(state, DB, 5433)
    with pytest.raises(Conflict):
        add(state, KV, 5433, {"password": b"kv"})
    assert state.datastores() == [first]
    assert state.find_datastore("cache") is None
    assert state.datastore_secrets("cache") == {}


def test_after_a_conflict_the_state_still_works(state: DataState) -> None:
    add(state)
    with pytest.raises(Conflict):
        add(state)
    add(state, KV, 6380)  # the failed transaction left no lock or half-written row behind
    assert [d.name for d in state.datastores()] == ["app-db", "cache"]


# --- remove -----------------------------------------------------------------------------------


def test_remove_drops_the_row_and_its_secrets(state: DataState) -> None:
    add(state)
    add(state, KV, 6380)
    state.remove_datastore("app-db")
    assert state.find_datastore("app-db") is None
    assert state.datastore_secrets("app-db") == {}
    assert [d.name for d in state.datastores()] == ["cache"]
    assert state.datastore_secrets("cache") == SECRETS
    # the name and the port are free again
    again = add(state, DB, 5433, {"password": b"new"})
    assert again.status == DatastoreStatus.CREATING
    assert state.datastore_secrets("app-db") == {"password": b"new"}


def test_remove_of_an_unknown_name_is_a_no_op(state: DataState) -> None:
    add(state)
    state.remove_datastore("ghost")
    assert [d.name for d in state.datastores()] == ["app-db"]


# --- backup runs and drills ------------------------------------------------------------------


def test_a_backup_run_from_start_to_end(state: DataState, clock: FakeClock) -> None:
    add(state)
    run = state.add_backup_run("app-db", "manual", "full", deploy_id=None)
    assert run == BackupRun(
        id=run.id, datastore="app-db", trigger="manual", kind="full", status=RunStatus.RUNNING,
        backup_ids=(), size_bytes=None, started_at=clock.now(), finished_at=None, error="",
        deploy_id=None,
    )  # fmt: skip
    clock.advance(42)
    state.finish_backup_run(run.id, RunStatus.SUCCEEDED, ("20240310-030000F",), 1234, "")
    (done,) = state.backup_runs("app-db")
    assert (done.status, done.backup_ids, done.size_bytes, done.error) == (
        RunStatus.SUCCEEDED, ("20240310-030000F",), 1234, "",
    )  # fmt: skip
    assert (done.started_at, done.finished_at) == (run.started_at, run.started_at + 42)


def test_a_failed_backup_run_keeps_its_error(state: DataState) -> None:
    run = state.add_backup_run("app-db", "pre-deploy", "diff", deploy_id=7)
    state.finish_backup_run(run.id, RunStatus.FAILED, (), None, "pgbackrest exited with 1")
    (failed,) = state.backup_runs("app-db")
    assert (failed.status, failed.error, failed.deploy_id, failed.backup_ids) == (
        RunStatus.FAILED, "pgbackrest exited with 1", 7, (),
    )  # fmt: skip


def test_backup_runs_newest_first_per_datastore_with_a_limit(
    state: DataState, clock: FakeClock
) -> None:
    ids = []
    for trigger in ("created", "schedule", "manual", "schedule"):
        ids.append(state.add_backup_run("app-db", trigger, "full", None).id)
        state.add_backup_run("cache", "schedule", "rdb", None)
        clock.advance(60)
    runs = state.backup_runs("app-db")
    assert [r.id for r in runs] == ids[::-1]
    assert [r.trigger for r in runs] == ["schedule", "manual", "schedule", "created"]
    assert [r.id for r in state.backup_runs("app-db", 2)] == ids[:1:-1]
    assert {r.kind for r in state.backup_runs("cache")} == {"rdb"}
    assert len(state.backup_runs("cache")) == 4
    assert state.backup_runs("other") == []


def test_a_drill_from_start_to_end(state: DataState, clock: FakeClock) -> None:
    drill = state.add_drill("app-db", deploy_id=3)
    assert drill == Drill(
        id=drill.id, datastore="app-db", status=RunStatus.RUNNING, started_at=clock.now(),
        finished_at=None, backup_id="", target_at=None, heartbeat_at=None,
        recovery_point_s=None, restore_s=None, error="", deploy_id=3,
    )  # fmt: skip
    assert not drill.ok
    clock.advance(90)
    state.finish_drill(drill.id, RunStatus.SUCCEEDED, backup_id="20240310-030000F",
                       target_at=clock.now() - 80, heartbeat_at=clock.now() - 95,
                       recovery_point_s=15.0, restore_s=78.5)  # fmt: skip
    (done,) = state.drills("app-db")
    assert done.ok and done.finished_at == drill.started_at + 90
    assert (done.backup_id, done.recovery_point_s, done.restore_s) == (
        "20240310-030000F", 15.0, 78.5,
    )  # fmt: skip
    assert (done.target_at, done.heartbeat_at) == (drill.started_at + 10, drill.started_at - 5)


def test_finish_drill_refuses_unknown_columns(state: DataState) -> None:
    drill = state.add_drill("app-db", None)
    with pytest.raises(ValueError, match="not drill columns"):
        state.finish_drill(drill.id, RunStatus.FAILED, datastore="other")
    assert state.drills("app-db") == [drill]


def test_drills_newest_first_with_a_limit(state: DataState, clock: FakeClock) -> None:
    ids = []
    for _ in range(4):
        ids.append(state.add_drill("app-db", None).id)
        clock.advance(1)
    state.add_drill("cache", None)
    assert [d.id for d in state.drills("app-db")] == ids[::-1]
    assert [d.id for d in state.drills("app-db", 1)] == ids[-1:]
    assert len(state.drills("cache")) == 1


# --- rename ---------------------------------------------------------------------------------


def test_rename_moves_secrets_backup_runs_and_drills(state: DataState) -> None:
    before = add(state)
    add(state, KV, 6380)
    run = state.add_backup_run("app-db", "schedule", "full", None)
    state.finish_backup_run(run.id, RunStatus.SUCCEEDED, ("b1",), 10, "")
    drill = state.add_drill("app-db", None)
    kv_run = state.add_backup_run("cache", "schedule", "rdb", None)
    tomb = "app-db (deleted 2024-03-10 03:00:00)"
    state.rename_datastore("app-db", tomb)
    assert state.find_datastore("app-db") is None
    renamed = state.datastore(tomb)
    assert renamed == replace(before, name=tomb)  # same port, directory, spec, times
    assert state.datastore_secrets(tomb) == SECRETS
    assert state.datastore_secrets("app-db") == {}
    assert [(r.id, r.datastore) for r in state.backup_runs(tomb)] == [(run.id, tomb)]
    assert [(d.id, d.datastore) for d in state.drills(tomb)] == [(drill.id, tomb)]
    assert state.backup_runs("app-db") == [] and state.drills("app-db") == []
    # the others are untouched
    assert state.backup_runs("cache") == [kv_run]
    assert state.datastore_secrets("cache") == SECRETS
    # and the name is free again, with none of the old one's history
    add(state, DB, 5434, {"password": b"fresh"})
    assert state.datastore_secrets("app-db") == {"password": b"fresh"}
    assert state.backup_runs("app-db") == []


def test_rename_onto_a_taken_name_changes_nothing(state: DataState) -> None:
    a = add(state, DB, 5433, {"password": b"a"})
    b = add(state, KV, 6380, {"password": b"b"})
    run = state.add_backup_run("app-db", "manual", "full", None)
    with pytest.raises((Conflict, sqlite3.IntegrityError)):
        state.rename_datastore("app-db", "cache")
    assert state.datastores() == [a, b]
    assert state.datastore_secrets("app-db") == {"password": b"a"}
    assert state.datastore_secrets("cache") == {"password": b"b"}
    assert state.backup_runs("app-db") == [run] and state.backup_runs("cache") == []


def test_the_state_persists_in_the_file(tmp_path: Path, clock: FakeClock) -> None:
    first = DataState(Database(tmp_path / "s.db"), clock)
    ds = add(first)
    first.add_backup_run("app-db", "manual", "full", None)
    first.db.close()
    reopened = DataState(Database(tmp_path / "s.db"), clock)
    assert reopened.datastore("app-db") == ds
    assert reopened.datastore_secrets("app-db") == SECRETS
    assert len(reopened.backup_runs("app-db")) == 1
