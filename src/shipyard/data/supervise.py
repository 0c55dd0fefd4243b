"""Keep datastores running: bring them up with the daemon (re-adopting servers that kept
running, never restarting them), restart a server that died (with backoff), write the
heartbeat that restore drills read back, and stop them all cleanly on `shipyard down`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from shipyard.context import Context, log_emitter
from shipyard.data import disks, lifecycle
from shipyard.data.backups import due, run_backup
from shipyard.data.restore import drill
from shipyard.errors import ShipyardError
from shipyard.records import Datastore, DatastoreStatus, RunStatus
from shipyard.run.claims import Claims

log = logging.getLogger("shipyard.data")
# A heartbeat row every 10 s: a drill then measures the recovery point to within 10 s (the
# data loss itself is bounded by archive_timeout, 60 s on a quiet database).
HEARTBEAT_S = 10.0
SCHEDULE_EVERY_S = 30.0  # how often schedules are looked at
RETRY_FAILED_S = 3600.0  # a failed scheduled backup is tried again after an hour
MAX_BACKOFF_S = 60.0


def bring_up(ctx: Context) -> None:
    """At daemon start: every datastore that is not running is started (in parallel); those
    still running are re-adopted as they are. A datastore that cannot start is marked failed
    with the reason; it never keeps the daemon down."""
    for ds in lifecycle.live(ctx):
        if ds.status == DatastoreStatus.CREATING and ds.origin != "blueprint":
            # a restore the daemon's end interrupted: its files may be half there
            reason = ("its restore was interrupted; delete it (`shipyard db delete "
                      f"'{ds.name}' --yes`) and restore again")  # fmt: skip
            ctx.data.update_datastore(ds.name, status=DatastoreStatus.FAILED, reason=reason)
    todo = [ds for ds in lifecycle.live(ctx)
            if not lifecycle.running(ctx, ds) and not _interrupted_restore(ds)]  # fmt: skip
    adopted = [ds.name for ds in lifecycle.live(ctx) if lifecycle.running(ctx, ds)]
    if adopted:
        log.info("re-adopted running datastore(s): %s", ", ".join(adopted))
    # primaries first: a replica that was down streams from its primary
    for wave in ([d for d in todo if not d.spec.primary], [d for d in todo if d.spec.primary]):
        if wave:
            with ThreadPoolExecutor(min(4, len(wave)), thread_name_prefix="data-up") as pool:
                list(pool.map(lambda ds: _start_logged(ctx, ds), wave))


def _interrupted_restore(ds: Datastore) -> bool:
    return (
        ds.status == DatastoreStatus.FAILED
        and ds.origin != "blueprint"
        and ("restore was interrupted" in ds.reason)
    )


def _start_logged(ctx: Context, ds: Datastore) -> None:
    try:
        lifecycle.start(ctx, ds, log_emitter(log))
    except Exception as exc:  # one datastore never keeps the daemon down
        message = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
        log.error("%s: cannot start: %s", ds.label, message)
        ctx.data.update_datastore(ds.name, status=DatastoreStatus.FAILED, reason=message)


def stop_all(ctx: Context) -> None:
    """`shipyard down`: every server stopped cleanly, replicas first."""
    stores = sorted(lifecycle.live(ctx), key=lambda d: d.spec.primary is None)
    for ds in stores:
        try:
            lifecycle.stop(ctx, ds)
        except ShipyardError as exc:
            log.error("%s: cannot stop: %s", ds.label, exc.message)


class DataSupervisor:
    """A loop (one thread) that restarts datastores whose server died and writes heartbeats."""

    def __init__(self, ctx: Context, claims: Claims, interval_s: float = 1.0) -> None:
        self.ctx = ctx
        self.claims = claims
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_try: dict[str, float] = {}
        self._beat_at: dict[str, float] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._scheduled_at = float("-inf")
        self._jobs: set[str] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="data-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the loop survives anything; the next tick retries
                log.exception("data supervisor tick failed")

    def tick(self) -> None:
        now = self.ctx.clock.monotonic()
        if now - self._scheduled_at >= SCHEDULE_EVERY_S:
            self._scheduled_at = now
            self._run_schedules()
        for ds in self.ctx.data.datastores():
            if ds.status not in (DatastoreStatus.AVAILABLE, DatastoreStatus.RESTARTING):
                continue
            if lifecycle.running(self.ctx, ds):
                if ds.kind == "postgres" and not ds.spec.primary:
                    self._heartbeat(ds, now)
                continue
            if now >= self._next_try.get(ds.name, 0.0):
                self._restart(ds, now)

    def _run_schedules(self) -> None:
        """Start the backups and drills whose cron schedule fired since their last run."""
        wall = self.ctx.clock.now()
        self._snapshot_disks(wall)
        self._purge_deleted(wall)
        for ds in self.ctx.data.datastores():
            if ds.status != DatastoreStatus.AVAILABLE or ds.spec.primary is not None:
                continue
            policy = ds.spec.backups
            runs = self.ctx.data.backup_runs(ds.name, 1)
            last = runs[0].started_at if runs else None
            failed = bool(runs) and runs[0].status == RunStatus.FAILED
            retry = failed and last is not None and wall - last >= RETRY_FAILED_S
            if retry or due(policy.schedule, last, ds.created_at, wall):
                emit = log_emitter(log)
                self._job(ds, "backup", partial(run_backup, self.ctx, ds.name, "schedule", emit))
                continue
            drills = self.ctx.data.drills(ds.name, 1)
            last_drill = drills[0].started_at if drills else None
            has_backup = bool(runs) and runs[0].status == RunStatus.SUCCEEDED
            if has_backup and due(policy.drill_schedule, last_drill, ds.created_at, wall):
                self._job(ds, "drill", partial(drill, self.ctx, ds.name, log_emitter(log)))

    def _purge_deleted(self, wall: float) -> None:
        """A deleted datastore's backups go once its retention has passed."""
        for ds in self.ctx.data.datastores():
            keep = ds.spec.backups.retention_days * 86400
            if ds.status == DatastoreStatus.DELETED and wall - ds.updated_at > keep:
                lifecycle.purge(self.ctx, ds)
                log.info("%s: its backups are past their retention: removed", ds.label)

    def _snapshot_disks(self, wall: float) -> None:
        """Each service's disk daily (disks.SNAPSHOT_SCHEDULE), kept 7 days."""
        for svc in self.ctx.state.services():
            if svc.spec.disk is None or svc.current_release is None:
                continue
            taken = disks.snapshots(self.ctx, svc.name)
            last = taken[-1].created_at if taken else None
            if due(disks.SNAPSHOT_SCHEDULE, last, svc.created_at, wall):
                work = partial(disks.take_snapshot, self.ctx, svc.name, "schedule")
                self._job_key(f"disk:{svc.name}", f"{svc.name}'s disk", "snapshot", work)

    def _job(self, ds: Datastore, what: str, work: Callable[[], object]) -> None:
        """Run ``work`` in a thread of its own, holding the datastore's work claim (another
        backup or drill of it waits for the next tick's turn; restarts and deploys do not)."""
        self._job_key(lifecycle.work_key(ds.name), ds.label, what, work)

    def _job_key(self, key: str, label: str, what: str, work: Callable[[], object]) -> None:
        with self._lock:
            if key in self._jobs or not self.claims.try_claim(key, f"scheduled {what}"):
                return
            self._jobs.add(key)

        def run() -> None:
            try:
                work()
            except ShipyardError as exc:
                log.error("%s: scheduled %s failed: %s", label, what, exc.message)
            except Exception:
                log.exception("%s: scheduled %s crashed", label, what)
            finally:
                with self._lock:
                    self._jobs.discard(key)
                self.claims.free([key], f"scheduled {what}")

        threading.Thread(target=run, name=f"{what}-{key}", daemon=True).start()

    def _heartbeat(self, ds: Datastore, now: float) -> None:
        if now - self._beat_at.get(ds.name, float("-inf")) < HEARTBEAT_S:
            return
        self._beat_at[ds.name] = now
        engine = self.ctx.engines.get(ds.kind)
        beat = getattr(engine, "heartbeat", None)
        if beat is None:
            return
        try:
            beat(ds)
        except Exception as exc:  # a busy or restarting server: the next minute retries
            log.warning("%s: heartbeat not written: %s", ds.label, str(exc).splitlines()[0])

    def _restart(self, ds: Datastore, now: float) -> None:
        key = lifecycle.claim_key(ds.name)
        with self._lock:
            if ds.name in self._busy or not self.claims.try_claim(key, "data-supervisor"):
                return
            self._busy.add(ds.name)
        delay = min(MAX_BACKOFF_S, 2.0 ** min(ds.restarts, 6))
        self._next_try[ds.name] = now + delay
        self.ctx.data.update_datastore(
            ds.name, status=DatastoreStatus.RESTARTING, restarts=ds.restarts + 1,
            reason="its server exited; restarting",
        )  # fmt: skip
        log.warning("%s: its server is not running; restarting it", ds.label)

        def run() -> None:
            try:
                current = self.ctx.data.find_datastore(ds.name)
                if current is not None and current.status == DatastoreStatus.RESTARTING:
                    lifecycle.start(self.ctx, current, log_emitter(log))
            except ShipyardError as exc:
                log.error("%s: restart failed: %s", ds.label, exc.message)
                self.ctx.data.update_datastore(ds.name, reason=exc.message)
            finally:
                with self._lock:
                    self._busy.discard(ds.name)
                self.claims.free([key], "data-supervisor")

        threading.Thread(target=run, name=f"restart-{ds.name}", daemon=True).start()
