"""Cron jobs: due times, the one-run-at-a-time rule, timeouts, restarts and deploys, with a fake
clock and fake processes (shipyard/testing.py); the Blueprint side of `type: cron`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from shipyard.blueprint.load import parse_blueprint
from shipyard.clock import FakeClock
from shipyard.context import Context
from shipyard.controlplane.cronstate import CronState, cron_state
from shipyard.errors import BlueprintError, Conflict, UsageError
from shipyard.records import ReleaseStatus
from shipyard.rollout.cron import release_cron
from shipyard.run.cron import (
    CRON_MARKER,
    CronOptions,
    CronScheduler,
    CronStatus,
    decide,
    exit_status_of,
    next_due,
    start_run,
)
from shipyard.testing import FakeRuntime, make_context, seed_release, seed_service

EVERY_MINUTE = "* * * * *"


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_next_due_is_strictly_after_and_in_utc() -> None:
    assert next_due("0 3 * * *", _at("2026-01-01T02:59:59")) == _at("2026-01-01T03:00:00")
    assert next_due("0 3 * * *", _at("2026-01-01T03:00:00")) == _at("2026-01-02T03:00:00")
    assert next_due("*/15 * * * *", _at("2026-01-01T10:07:00")) == _at("2026-01-01T10:15:00")


@pytest.mark.parametrize(
    ("now", "running", "expected"),
    [(99.0, False, "wait"), (99.0, True, "wait"), (100.0, False, "run"), (100.0, True, "skip"),
     (500.0, True, "skip")],
)  # fmt: skip
def test_decide(now: float, running: bool, expected: str) -> None:
    assert decide(100.0, now, running) == expected


def test_exit_status() -> None:
    assert exit_status_of(0, None) == (CronStatus.SUCCEEDED, 0)
    assert exit_status_of(3, None) == (CronStatus.FAILED, 3)
    assert exit_status_of(None, 9) == (CronStatus.FAILED, 137)
    assert exit_status_of(None, None) == (CronStatus.FAILED, None)


def _ctx(tmp_path: Path) -> tuple[Context, FakeRuntime, FakeClock]:
    runtime = FakeRuntime(exit_code=0)
    ctx = make_context(tmp_path, runtime)
    clock = ctx.clock
    assert isinstance(clock, FakeClock)
    # whole minutes: the schedule fires on each minute
    clock.advance(60 - clock.now() % 60)
    seed_service(ctx, "job", "cron", instances=0, schedule=EVERY_MINUTE)
    return ctx, runtime, clock


def _pid(runtime: FakeRuntime, index: int = -1) -> int:
    return runtime.next_pid if index == -1 else 101 + index


def test_a_due_run_starts_once_and_an_overlapping_one_is_skipped(tmp_path: Path) -> None:
    ctx, runtime, clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    sched = CronScheduler(ctx, runs)
    sched.tick()  # first seen: the next due time is computed from now, nothing runs
    assert runs.runs("job") == [] and runtime.started == []
    clock.advance(30)
    sched.tick()
    assert runs.runs("job") == []
    clock.advance(30)  # the minute
    sched.tick()
    sched.tick()  # the same due time never starts twice
    [run] = runs.runs("job")
    assert (run.status, run.trigger, run.release) == ("running", "schedule", 1)
    spec = runtime.started[-1]
    assert spec.env[CRON_MARKER] == f"job/{run.id}"
    assert spec.env["RENDER_SERVICE_TYPE"] == "cron"
    assert "python3 app.py" in spec.command and f"{run.id}.exit" in spec.command
    assert spec.log_path == ctx.settings.services_dir / "job" / "cron-runs" / str(run.id)
    clock.advance(60)  # due again while the run still runs: skipped, and recorded
    sched.tick()
    skipped, running = runs.runs("job")
    assert skipped.status == "skipped" and f"run #{run.id} was still running" in skipped.reason
    assert running.id == run.id and len(runtime.started) == 1
    runtime.live.discard(_pid(runtime))  # the job ends (exit 0)
    sched.tick()
    assert runs.run("job", run.id).status == "succeeded"
    assert runs.run("job", run.id).exit_code == 0
    clock.advance(60)
    sched.tick()
    assert runs.runs("job")[0].status == "running" and len(runtime.started) == 2


def test_a_failed_run_records_its_exit_code(tmp_path: Path) -> None:
    ctx, runtime, _clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    run = start_run(ctx, runs, "job", "manual")
    runtime.exit_code = 3
    runtime.live.discard(_pid(runtime))
    CronScheduler(ctx, runs).tick()
    done = runs.run("job", run.id)
    assert (done.status, done.exit_code, done.trigger) == ("failed", 3, "manual")


def test_manual_run_is_refused_while_one_runs_and_for_other_services(tmp_path: Path) -> None:
    ctx, _runtime, _clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    first = start_run(ctx, runs, "job", "manual")
    with pytest.raises(Conflict, match=f"running already \\(run #{first.id}\\)"):
        start_run(ctx, runs, "job", "manual")
    seed_service(ctx, "web1", "worker")
    with pytest.raises(UsageError, match="not a cron job"):
        start_run(ctx, runs, "web1", "manual")


def test_a_run_over_its_maximum_time_is_killed(tmp_path: Path) -> None:
    ctx, runtime, clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    sched = CronScheduler(ctx, runs, CronOptions(max_run_s=100))
    run = start_run(ctx, runs, "job", "manual")
    clock.advance(100)
    sched.tick()
    assert runs.run("job", run.id).status == "running"
    clock.advance(1)
    sched.tick()
    sched.stop()  # joins the thread that stops the group
    done = runs.run("job", run.id)
    assert done.status == "timed_out" and "longer than 100 s" in done.reason
    assert [h.pid for h in runtime.stopped] == [_pid(runtime)]


def test_the_service_max_run_seconds_wins(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    ctx = make_context(tmp_path, runtime)
    seed_service(ctx, "short", "cron", instances=0, schedule=EVERY_MINUTE, max_run_seconds=5.0)
    runs = cron_state(ctx)
    sched = CronScheduler(ctx, runs, CronOptions(max_run_s=1000))
    run = start_run(ctx, runs, "short", "manual")
    assert isinstance(ctx.clock, FakeClock)
    ctx.clock.advance(6)
    sched.tick()
    sched.stop()
    assert runs.run("short", run.id).status == "timed_out"


def test_a_deploy_during_a_run_applies_from_the_next_run(tmp_path: Path) -> None:
    ctx, runtime, _clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    sched = CronScheduler(ctx, runs)
    first = start_run(ctx, runs, "job", "manual")
    release = seed_release(ctx, "job")
    events: list[str] = []
    release_cron(ctx, release, lambda m, level: events.append(m),
                 previous_status=ReleaseStatus.SUPERSEDED, from_blueprint=True)  # fmt: skip
    assert ctx.state.service("job").current_release == 2 and "release 2 is live" in events[0]
    assert ctx.state.service("job").desired_instances == 0
    assert runtime.stopped == [] and runs.run("job", first.id).status == "running"
    runtime.live.discard(_pid(runtime))
    sched.tick()
    done = runs.run("job", first.id)
    assert (done.status, done.release) == ("succeeded", 1)
    second = start_run(ctx, runs, "job", "manual")
    assert second.release == 2


def test_restart_adopts_live_runs_and_closes_the_others(tmp_path: Path) -> None:
    ctx, runtime, clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    seed_service(ctx, "job2", "cron", instances=0, schedule=EVERY_MINUTE)
    seed_service(ctx, "job3", "cron", instances=0, schedule=EVERY_MINUTE)
    alive = start_run(ctx, runs, "job", "manual")
    ended = start_run(ctx, runs, "job2", "manual")
    lost = start_run(ctx, runs, "job3", "manual")
    runtime.live.discard(_pid(runtime, 1))  # job2 ended while the daemon was down ...
    assert ended.exit_file is not None
    ended.exit_file.write_text("4\n")  # ... its wrapper wrote the exit code
    runtime.live.discard(_pid(runtime, 2))  # job3 died without one
    sched = CronScheduler(ctx, runs)  # a new daemon
    sched.recover()
    assert runs.run("job", alive.id).status == "running"
    assert (runs.run("job2", ended.id).status, runs.run("job2", ended.id).exit_code) == (
        "failed", 4,
    )  # fmt: skip
    assert runs.run("job3", lost.id).status == "interrupted"
    # after the restart no missed due time is run: the next one is computed from now
    clock.advance(3600)
    sched.tick()
    assert [r.id for r in runs.runs("job2")] == [ended.id]
    clock.advance(60)
    sched.tick()
    assert runs.runs("job2")[0].status == "running"


def test_a_run_whose_pid_was_never_recorded_is_found_by_its_marker(tmp_path: Path) -> None:
    ctx, runtime, _clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    assert isinstance(runs, CronState)
    run = start_run(ctx, runs, "job", "manual")
    runs.db.execute("UPDATE cron_runs SET pid=NULL, start_time=NULL WHERE id=?", run.id)
    CronScheduler(ctx, runs).recover()
    assert runs.run("job", run.id).pid == _pid(runtime)


def test_down_interrupts_running_runs(tmp_path: Path) -> None:
    ctx, runtime, _clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    run = start_run(ctx, runs, "job", "manual")
    CronScheduler(ctx, runs).stop(interrupt_runs=True)
    assert runs.run("job", run.id).status == "interrupted"
    assert runtime.stopped and runtime.stopped[-1].pid == _pid(runtime)


def test_history_is_pruned_with_its_logs(tmp_path: Path) -> None:
    ctx, _runtime, _clock = _ctx(tmp_path)
    runs = cron_state(ctx)
    for _ in range(5):
        runs.add_skipped("job", 1, "schedule", None, "test")
    assert len(runs.prune("job", 2)) == 0  # skipped runs have no log
    assert len(runs.runs("job")) == 2


CRON_BLUEPRINT = """\
services:
  - type: cron
    name: nightly
    runtime: python
    schedule: "0  3 * * *"
    buildCommand: pip install -r requirements.txt
    startCommand: python job.py
    envVars:
      - key: MODE
        value: nightly
"""


def test_blueprint_cron_jobs_are_run() -> None:
    loaded = parse_blueprint(CRON_BLUEPRINT, filename="render.yaml", kind="render")
    [spec] = loaded.services
    assert (spec.type, spec.schedule, spec.start_command, spec.num_instances) == (
        "cron", "0 3 * * *", "python job.py", 0,
    )  # fmt: skip
    assert not [n for n in loaded.notices if "not supported" in n.message]


def test_blueprint_cron_problems() -> None:
    bad = (
        CRON_BLUEPRINT.replace('"0  3 * * *"', '"every day"')
        + """\
  - type: web
    name: site
    runtime: python
    startCommand: python app.py
    envVars:
      - key: JOB
        fromService: {type: cron, name: nightly, property: hostport}
"""
    )
    with pytest.raises(BlueprintError) as caught:
        parse_blueprint(bad, filename="render.yaml", kind="render")
    text = str(caught.value)
    assert "'every day' is not a cron schedule" in text
    assert "cron job 'nightly' has no hostport" in text
    start = "    startCommand: python job.py\n"
    extension = CRON_BLUEPRINT.replace(start, start + "    maxRunSeconds: 60\n")
    with pytest.raises(BlueprintError, match=r"move it to shipyard\.yaml"):
        parse_blueprint(extension, filename="render.yaml", kind="render")
    spec = parse_blueprint(extension, filename="shipyard.yaml", kind="shipyard").services[0]
    assert spec.max_run_seconds == 60
