"""Cron jobs (``type: cron``): the scheduler that starts each run of a job's live release.

A cron job is built and released like any service, but has no instance: its live (current)
release is what the next run executes. The scheduler ticks every ``CronOptions.tick_s``:

* every running run is watched: when its process ended, the run is finished with its exit
  code (read from the runtime, or from the ``<run>.exit`` file the run's wrapper writes, so a
  run that ended while the daemon was down still gets its code); a run past its maximum time
  (the service's ``maxRunSeconds``, else ``SHIPYARD_CRON_MAX_RUN_S``, 12 h) has its whole
  process group killed and is recorded ``timed_out``;
* every cron job whose due time (its schedule, UTC) has come starts one run of its current
  release, with the runtime environment of an instance (the release's env snapshot, its
  toolchain, the service's HOME), its output into a log directory of its own
  (``services/<name>/cron-runs/<id>/``). At most one run of a job at a time: a due time that
  comes while a run is still going is recorded as ``skipped`` (one row per due time).

Due times are computed from "now" when the scheduler first sees a job (daemon start, first
deploy, schedule change): runs missed while the daemon was down are not run afterwards, and
nothing is recorded for them. A deploy never touches a running run: it finishes with the
release it started with, the next one runs the new release. After a daemon restart a run
whose process still lives is re-adopted (pid + start time), one whose process is gone is
finished from its exit file or marked ``interrupted``.

Testing: ``SHIPYARD_CRON_TICK_S`` (default 1 s) sets the tick, and ``SHIPYARD_CRON_SPEED``
(default 1) makes schedules run that many times faster than real time (60: a ``* * * * *``
job comes due every second), so integration tests see scheduled runs within seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

from croniter import croniter

from shipyard.context import Context
from shipyard.errors import Conflict, ShipyardError, UsageError
from shipyard.records import Release, Service
from shipyard.release.env import runtime_env
from shipyard.release.store import artifact
from shipyard.run.runtime import ProcessHandle, ProcessSpec

log = logging.getLogger("shipyard.cron")

CRON_MARKER = "SHIPYARD_CRON_RUN"  # <service>/<run id>: how a run's processes are found
DEFAULT_MAX_RUN_S = 43200.0  # Render's limit: 12 h
DEFAULT_TICK_S = 1.0
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL of the group after this long
KEEP_RUNS = 200  # finished runs kept per job (with their logs)
BASH = "/bin/bash"


class CronStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"


Trigger = Literal["schedule", "manual"]


@dataclass(frozen=True)
class CronRun:
    id: int
    service: str
    release: int | None
    trigger: str  # schedule | manual
    status: CronStatus
    scheduled_at: float | None  # the due time (scheduled runs and skips)
    started_at: float
    finished_at: float | None
    exit_code: int | None
    pid: int | None
    start_time: int | None
    log_path: str  # a log directory (drivers/local/logfiles.py); "" for skipped runs
    reason: str

    @property
    def handle(self) -> ProcessHandle | None:
        if self.pid is None:
            return None
        return ProcessHandle(pid=self.pid, start_time=self.start_time or 0)

    @property
    def exit_file(self) -> Path | None:
        return Path(f"{self.log_path}.exit") if self.log_path else None


class CronRuns(Protocol):
    """Where runs are recorded (``controlplane/cronstate.py``). One short transaction per
    method; NotFound for an unknown run."""

    def add_run(
        self, service: str, release: int, trigger: str, scheduled_at: float | None,
        log_root: Path,
    ) -> CronRun:  # fmt: skip
        """A running run, its log directory ``log_root/<id>``. Conflict if the service has a
        running run already (one at a time: a unique index decides)."""

    def add_skipped(
        self, service: str, release: int | None, trigger: str, scheduled_at: float | None,
        reason: str,
    ) -> CronRun: ...  # fmt: skip

    def set_handle(self, run_id: int, handle: ProcessHandle) -> None: ...

    def finish(
        self, run_id: int, status: CronStatus, exit_code: int | None, reason: str = "",
        finished_at: float | None = None,
    ) -> None:  # fmt: skip
        """Only a running run changes (a run finished twice keeps its first outcome)."""

    def run(self, service: str, run_id: int) -> CronRun: ...

    def runs(self, service: str, limit: int = 50) -> list[CronRun]:
        """Newest first."""

    def running(self) -> list[CronRun]: ...

    def last_run(self, service: str) -> CronRun | None:
        """The newest run that was started (not a skip)."""

    def prune(self, service: str, keep: int) -> list[str]:
        """Delete finished runs beyond the newest ``keep``; their log paths."""


@dataclass(frozen=True)
class CronOptions:
    tick_s: float = DEFAULT_TICK_S
    max_run_s: float = DEFAULT_MAX_RUN_S
    speed: float = 1.0  # testing: schedules run this many times faster than real time

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CronOptions:
        return cls(
            tick_s=_number(env, "SHIPYARD_CRON_TICK_S", DEFAULT_TICK_S, 0.05, 60),
            max_run_s=_number(env, "SHIPYARD_CRON_MAX_RUN_S", DEFAULT_MAX_RUN_S, 1, 7 * 86400),
            speed=_number(env, "SHIPYARD_CRON_SPEED", 1.0, 1, 3600),
        )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise UsageError(f"{name} has value {raw!r}. Expected a number from {low:g} to {high:g}.")
    return value


# --- pure decisions -----------------------------------------------------------------------------


def next_due(schedule: str, after: float) -> float:
    """The first time strictly after ``after`` (epoch seconds) the cron ``schedule`` (UTC)
    fires. Pure."""
    start = dt.datetime.fromtimestamp(after, dt.UTC)
    fire: dt.datetime = croniter(schedule, start).get_next(dt.datetime)
    return fire.timestamp()


Decision = Literal["wait", "run", "skip"]


def decide(due: float, now: float, running: bool) -> Decision:
    """What a tick does about one job: nothing before its due time; at or after it, start a
    run, or record a skip when the previous run still runs. Pure."""
    if now < due:
        return "wait"
    return "skip" if running else "run"


def max_run_s(spec_max: float | None, options: CronOptions) -> float:
    return float(spec_max) if spec_max else options.max_run_s


def exit_status_of(code: int | None, sig: int | None) -> tuple[CronStatus, int | None]:
    """How a run that ended is recorded: 0 succeeded, anything else failed (a signal N as
    128+N, as the shell reports it); an unknown code is a failure. Pure."""
    if code is None and sig:
        code = 128 + sig
    return (CronStatus.SUCCEEDED if code == 0 else CronStatus.FAILED), code


# --- runs ---------------------------------------------------------------------------------------


def runs_dir(ctx: Context, service: str) -> Path:
    """``services/<name>/cron-runs``: each run's log directory and exit file."""
    return ctx.settings.services_dir / service / "cron-runs"


def run_marker(service: str, run_id: int) -> str:
    return f"{service}/{run_id}"


def wrapped(command: str, exit_file: Path) -> str:
    """The job's command under a shell that writes its exit code to ``exit_file`` when it
    ends: the daemon may be gone by then (a run outlives it like an instance does)."""
    code_file = shlex.quote(str(exit_file))
    return (
        f"{BASH} -c {shlex.quote(command)}; code=$?; "
        f'printf \'%s\\n\' "$code" > {code_file}; exit "$code"'
    )


def cron_service(ctx: Context, service: str) -> Service:
    svc = ctx.state.service(service)
    if svc.type != "cron":
        raise UsageError(
            f"{service} is a {svc.type} service, not a cron job.", fields={"service": service}
        )
    return svc


def start_run(
    ctx: Context, runs: CronRuns, service: str, trigger: Trigger,
    scheduled_at: float | None = None,
) -> CronRun:  # fmt: skip
    """Start one run of ``service``'s current release now. Conflict when it has no live
    release or a run is running; a run that cannot start is recorded failed (and raised)."""
    svc = cron_service(ctx, service)
    if svc.current_release is None:
        raise Conflict(
            f"{service} has no live release yet; deploy it before running it.",
            fields={"service": service},
        )
    release = ctx.state.release(service, svc.current_release)
    run = runs.add_run(service, release.number, trigger, scheduled_at, runs_dir(ctx, service))
    try:
        handle = _spawn(ctx, svc, release, run)
    except BaseException as exc:
        message = exc.message if isinstance(exc, ShipyardError) else str(exc)
        runs.finish(run.id, CronStatus.FAILED, None, f"could not start: {message}")
        raise
    runs.set_handle(run.id, handle)
    return runs.run(service, run.id)


def _spawn(ctx: Context, svc: Service, release: Release, run: CronRun) -> ProcessHandle:
    spec = release.spec
    log_dir = Path(run.log_path)
    ctx.runtime.note(
        log_dir, f"==> run #{run.id} ({run.trigger}) of release {release.number}: "
        f"{spec.start_command}",
    )  # fmt: skip
    env = runtime_env(ctx, svc, release, {CRON_MARKER: run_marker(svc.name, run.id)})
    assert run.exit_file is not None
    return ctx.runtime.start(
        ProcessSpec(
            command=wrapped(spec.start_command, run.exit_file),
            cwd=artifact(release).workdir(spec.root_dir),
            env=env,
            log_path=log_dir,
        )
    )


def _read_exit_file(run: CronRun) -> tuple[int | None, float | None]:
    """(exit code, when it was written) from the run's exit file, (None, None) without one."""
    path = run.exit_file
    if path is None:
        return None, None
    try:
        text = path.read_text().strip()
        when = path.stat().st_mtime
    except OSError:
        return None, None
    return (int(text), when) if text.lstrip("-").isdigit() else (None, when)


class CronScheduler:
    """Starts due runs and watches running ones (see the module docstring). ``tick`` is one
    synchronous round (unit tests call it with a fake clock); ``start`` runs it in a thread."""

    def __init__(self, ctx: Context, runs: CronRuns, options: CronOptions | None = None) -> None:
        self.ctx = ctx
        self.runs = runs
        self.options = options or CronOptions()
        self._origin = ctx.clock.now()  # SHIPYARD_CRON_SPEED counts from here
        self._due: dict[str, tuple[str, float]] = {}  # service -> (schedule, next due)
        self._killing: set[int] = set()
        self._lock = threading.Lock()  # one tick at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._killers: list[threading.Thread] = []

    # time: schedules may run faster than real time (testing) -----------------------------
    def schedule_now(self) -> float:
        """Now, on the clock schedules are evaluated against."""
        return self._origin + (self.ctx.clock.now() - self._origin) * self.options.speed

    def _real(self, schedule_time: float) -> float:
        return self._origin + (schedule_time - self._origin) / self.options.speed

    def next_run(self, service: str) -> float | None:
        found = self._due.get(service)
        return self._real(found[1]) if found else None

    # thread --------------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cron", daemon=True)
        self._thread.start()

    def stop(self, interrupt_runs: bool = False) -> None:
        """Stop ticking; with ``interrupt_runs`` (``shipyard down``) also stop every running
        run (its group: SIGTERM, SIGKILL after a grace) and record it interrupted. Without,
        runs go on (the daemon's death must not stop a job) and are re-adopted later."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        for killer in list(self._killers):
            killer.join(timeout=STOP_GRACE_S + 10)
        if not interrupt_runs:
            return
        for run in self.runs.running():
            handle = run.handle
            status = self.ctx.runtime.stop(handle, STOP_GRACE_S) if handle else None
            code = None if status is None else exit_status_of(status.exit_code, status.signal)[1]
            self.runs.finish(run.id, CronStatus.INTERRUPTED, code, "stopped by `shipyard down`")

    def _loop(self) -> None:
        while not self._stop.wait(self.options.tick_s):
            try:
                self.tick()
            except Exception:  # never let one bad round end the scheduler
                log.exception("cron tick failed")

    # one round -------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            for run in self.runs.running():
                self._watch(run)
            running = {r.service for r in self.runs.running()}
            now = self.schedule_now()
            jobs = [s for s in self.ctx.state.services() if s.type == "cron"]
            for gone in set(self._due) - {s.name for s in jobs}:
                del self._due[gone]
            for svc in jobs:
                if svc.current_release is not None:
                    self._consider(svc, now, svc.name in running)

    def _consider(self, svc: Service, now: float, running: bool) -> None:
        schedule = svc.spec.schedule
        known = self._due.get(svc.name)
        if known is None or known[0] != schedule:  # first seen, or a new schedule: from now
            self._due[svc.name] = (schedule, next_due(schedule, now))
            return
        due = known[1]
        decision = decide(due, now, running)
        if decision == "wait":
            return
        self._due[svc.name] = (schedule, next_due(schedule, now))  # missed ones are not caught up
        scheduled_at = self._real(due)
        if decision == "skip":
            self._skip(svc, scheduled_at)
            return
        try:
            run = start_run(self.ctx, self.runs, svc.name, "schedule", scheduled_at)
            log.info("%s: started run #%d (release %s)", svc.name, run.id, run.release)
        except Conflict:  # a manual run started in between
            self._skip(svc, scheduled_at)
        except ShipyardError as exc:
            log.error("%s: scheduled run could not start: %s", svc.name, exc.message)

    def _skip(self, svc: Service, scheduled_at: float) -> None:
        current = next((r for r in self.runs.running() if r.service == svc.name), None)
        why = f"run #{current.id} was still running" if current else "a run was still running"
        self.runs.add_skipped(svc.name, svc.current_release, "schedule", scheduled_at, why)

    def _watch(self, run: CronRun) -> None:
        handle = run.handle
        if handle is None or run.id in self._killing:
            return  # being started (the pid is recorded next), or being killed
        status = self.ctx.runtime.status(handle)
        if not status.running:
            self._finish_ended(run, status.exit_code, status.signal)
            return
        limit = self._limit(run)
        if self.ctx.clock.now() - run.started_at > limit:
            self._killing.add(run.id)
            killer = threading.Thread(
                target=self._kill, args=(run, limit), name=f"cron-kill-{run.id}", daemon=True
            )
            self._killers = [k for k in self._killers if k.is_alive()] + [killer]
            killer.start()

    def _limit(self, run: CronRun) -> float:
        spec_max = None
        if run.release is not None:
            try:
                spec_max = self.ctx.state.release(run.service, run.release).spec.max_run_seconds
            except ShipyardError:
                spec_max = None
        return max_run_s(spec_max, self.options)

    def _kill(self, run: CronRun, limit: float) -> None:
        """The whole group: SIGTERM, SIGKILL after the grace; recorded timed out."""
        try:
            handle = run.handle
            assert handle is not None
            status = self.ctx.runtime.stop(handle, STOP_GRACE_S)
            code = exit_status_of(status.exit_code, status.signal)[1]
            reason = f"ran longer than {limit:g} s: its process group was killed"
            self.runs.finish(run.id, CronStatus.TIMED_OUT, code, reason)
            with contextlib.suppress(ShipyardError):
                self.ctx.runtime.note(Path(run.log_path), f"shipyard: {reason}")
            log.warning("%s: run #%d %s", run.service, run.id, reason)
        except Exception:
            log.exception("could not stop run #%d of %s", run.id, run.service)
        finally:
            self._killing.discard(run.id)

    def _finish_ended(self, run: CronRun, code: int | None, sig: int | None) -> None:
        finished_at = None
        if code is None and sig is None:  # adopted (or reaped elsewhere): its exit file says
            code, finished_at = _read_exit_file(run)
            if code is None:
                self.runs.finish(run.id, CronStatus.INTERRUPTED, None,
                                 "its process ended without an exit code")  # fmt: skip
                self._prune(run.service)
                return
        status, code = exit_status_of(code, sig)
        self.runs.finish(run.id, status, code, "", finished_at)
        self._prune(run.service)

    def _prune(self, service: str) -> None:
        for path in self.runs.prune(service, KEEP_RUNS):
            _remove_log(Path(path))

    # after a daemon restart ---------------------------------------------------------------
    def recover(self) -> None:
        """Runs the previous daemon left running: re-adopt those whose process lives (found by
        its marker when the pid was never recorded); finish the others from their exit file,
        or mark them interrupted."""
        for run in self.runs.running():
            handle = run.handle
            if handle is None:
                found = self.ctx.runtime.find(CRON_MARKER, run_marker(run.service, run.id))
                if found:
                    handle = min(found, key=lambda h: h.pid)  # the wrapper: the group leader
                    self.runs.set_handle(run.id, handle)
            if handle is not None and self.ctx.runtime.alive(handle):
                log.info("%s: re-adopted run #%d (pid %d)", run.service, run.id, handle.pid)
                continue
            code, finished_at = _read_exit_file(run)
            if code is None:
                why = "interrupted: the Shipyard daemon stopped during this run"
                self.runs.finish(run.id, CronStatus.INTERRUPTED, None, why)
            else:
                status, code = exit_status_of(code, None)
                self.runs.finish(run.id, status, code, "", finished_at)


def _remove_log(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink(missing_ok=True)
        path.rmdir()
    Path(f"{path}.exit").unlink(missing_ok=True)


def env_options() -> CronOptions:
    """The scheduler's options from the daemon's environment."""
    return CronOptions.from_env(os.environ)
