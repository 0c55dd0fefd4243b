"""Keep instances running: notice crashes, take them out of routing, restart with backoff.

A crashed instance is restarted on the same port; it is routed again only after its health
check passes. A crash loop keeps being retried at the backoff pace and is reported in `ps`.
Every change is a compare-and-set on the instance's state and restarts claim the service, so
the supervisor never undoes what an operation (deploy, scale, rollback) just did. Every few
seconds it also re-applies the routing table and finishes instances a failed operation left
half-way, so transient errors heal without a daemon restart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from shipyard.context import Context, log_emitter
from shipyard.errors import ShipyardError
from shipyard.records import Instance, InstanceState
from shipyard.route.desired import desired_table, sync_routes
from shipyard.route.table import ServerKey, ServerStats
from shipyard.run.claims import Claims
from shipyard.run.lifecycle import (
    drain_and_stop,
    handle_of,
    start_instance,
    stop_all,
    wait_healthy,
)

log = logging.getLogger("shipyard.supervisor")
# Render: ~15 s of failed checks takes an instance out of routing (HAProxy's `fall` does that
# here), ~60 s restarts it.
UNHEALTHY_RESTART_S = 60.0
# At rest a tick costs one state query and a liveness check per instance; the edge is asked
# less often: HAProxy's health verdicts only matter after UNHEALTHY_RESTART_S, and a dead
# HAProxy is rare (requests already wait in the kernel's accept queue meanwhile).
# At rest a tick costs one state query and a liveness check per instance; the edge is asked
# less often: HAProxy's health verdicts only matter after UNHEALTHY_RESTART_S, and a dead
# HAProxy is rare (connections wait in the kernel's accept queue meanwhile).
RECONCILE_EVERY = 20  # ticks
EDGE_CHECK_S = 5.0  # is HAProxy up, and which instances does it see DOWN
CACHE_MAX_S = 10.0  # the instance list is re-read at least this often
EDGE_CHECK_EVERY = 5  # ticks: is HAProxy up, and which instances does it see DOWN
LEFTOVER = (InstanceState.STARTING, InstanceState.DRAINING, InstanceState.STOPPING)


class Supervisor:
    def __init__(self, ctx: Context, claims: Claims, interval_s: float = 1.0) -> None:
        self.ctx = ctx
        self.claims = claims
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._restarting: set[str] = set()
        self._down_since: dict[str, float] = {}
        self._ticks = 0
        self._edge_checked = float("-inf")
        self._cache: tuple[int, float, list[Instance]] | None = None
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the loop and wait for restarts in flight (they may be starting processes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the loop must survive anything; the next tick retries
                log.exception("supervisor tick failed")

    def tick(self) -> None:
        """One look at every running and crashed instance: liveness from the runtime, health
        from ONE batched stats query to the edge (nothing per instance at rest)."""
        now = self.ctx.clock.now()
        look_at_edge = now - self._edge_checked >= EDGE_CHECK_S
        if look_at_edge:
            self._edge_checked = now
            self._keep_edge_up()
            self.ctx.disk.ensure_reserve()  # back once a full disk has room again
        changed = False
        instances = self._watched(now)
        stats = self._edge_stats() if instances and look_at_edge else None
        for inst in instances:
            if inst.state == InstanceState.RUNNING and not self.ctx.runtime.alive(handle_of(inst)):
                changed |= self._record_crash(inst, now)
            elif inst.state == InstanceState.RUNNING and self._unhealthy_too_long(inst, stats, now):
                changed |= self._restart_unhealthy(inst, now)
            elif (
                inst.state == InstanceState.CRASHED
                and inst.id not in self._restarting
                and (inst.restart_at or 0) <= now
                and not self.claims.busy(inst.service)
            ):
                self._restart_async(inst)
        self._ticks += 1
        if changed:
            self._cache = None  # this thread wrote: its own writes do not move the version
            sync_routes(self.ctx)
        elif self._ticks % RECONCILE_EVERY == 0:
            self.reconcile()
            self._cache = None

    def _watched(self, now: float) -> list[Instance]:
        """The running and crashed instances, read again only when the state changed (or at
        least every CACHE_MAX_S): at rest a tick costs no state query."""
        version = self.ctx.state.version()
        cached = self._cache
        if cached is None or cached[0] != version or now - cached[1] >= CACHE_MAX_S:
            rows = self.ctx.state.instances(states=(InstanceState.RUNNING, InstanceState.CRASHED))
            cached = self._cache = (version, now, rows)
        return cached[2]

    def reconcile(self) -> None:
        """Finish instances an operation left half-way; re-apply the routing table."""
        for inst in self.ctx.state.instances(states=(*LEFTOVER, InstanceState.RESTARTING)):
            if inst.id in self._restarting:
                continue  # a restart thread owns it
            owner = f"cleanup of {inst.id}"
            if not self.claims.try_claim(inst.service, owner):
                continue
            try:
                self._clean_up(inst)
            finally:
                self.claims.free([inst.service], owner)
        sync_routes(self.ctx)

    def _clean_up(self, inst: Instance) -> None:
        """An instance left half-way by an operation (or a restart) that failed."""
        if inst.state == InstanceState.RESTARTING:
            log.warning("restart of %s was left unfinished: retrying it", inst.id)
            self.ctx.runtime.stop(handle_of(inst), 5.0)
            self._back_to_crashed(inst.id, "restart left unfinished")
            return
        log.warning("stopping %s, left %s by an operation that failed", inst.id, inst.state)
        if inst.state == InstanceState.DRAINING:
            svc = self.ctx.state.service(inst.service)
            drain_and_stop(self.ctx, svc, [inst], log_emitter(log))
            return
        self.ctx.state.transition(inst.id, LEFTOVER, state=InstanceState.STOPPING)
        sync_routes(self.ctx)
        stop_all(self.ctx, [inst], grace_s=10.0)

    def _keep_edge_up(self) -> None:
        """HAProxy outlives the daemon, but if HAProxy itself dies, start it again."""
        if self.ctx.edge.is_running():
            return
        log.error("HAProxy is not running: starting it again")
        with self.ctx.route_lock:
            self.ctx.edge.ensure_running(desired_table(self.ctx.state, self.ctx.settings))

    def _edge_stats(self) -> dict[ServerKey, ServerStats] | None:
        try:
            return self.ctx.edge.all_server_stats()
        except ShipyardError:
            return None  # no verdict this tick

    def _unhealthy_too_long(
        self, inst: Instance, all_stats: dict[ServerKey, ServerStats] | None, now: float
    ) -> bool:
        """True once HAProxy has reported the instance DOWN for UNHEALTHY_RESTART_S."""
        if all_stats is None:
            return False
        stats = all_stats.get((inst.service, inst.id))
        if stats is None or not stats.status.upper().startswith("DOWN"):
            self._down_since.pop(inst.id, None)
            return False
        since = self._down_since.setdefault(inst.id, now)
        if now - since < UNHEALTHY_RESTART_S:
            return False
        del self._down_since[inst.id]
        return True

    def _restart_unhealthy(self, inst: Instance, now: float) -> bool:
        owner = f"restart of {inst.id}"
        if not self.claims.try_claim(inst.service, owner):
            return False
        try:
            log.warning(
                "instance %s failed its health checks for %.0f s: restarting it",
                inst.id,
                UNHEALTHY_RESTART_S,
            )
            self.ctx.runtime.stop(handle_of(inst), 5.0)
            return self._record_crash(
                inst, now, f"failed health checks for {UNHEALTHY_RESTART_S:g} s"
            )
        finally:
            self.claims.free([inst.service], owner)

    def _record_crash(self, inst: Instance, now: float, reason: str = "") -> bool:
        status = self.ctx.runtime.status(handle_of(inst))
        if reason:
            exit_text = reason
        elif status.signal:
            exit_text = f"killed by signal {status.signal}"
        elif status.exit_code is not None:
            exit_text = f"exited with code {status.exit_code}"
        else:
            exit_text = "exited"
        crashes = (*self.ctx.policy.recent(inst.crash_times, now), now)
        delay = self.ctx.policy.delay(crashes, now)
        changed = self.ctx.state.transition(
            inst.id, (InstanceState.RUNNING,), state=InstanceState.CRASHED, last_exit=exit_text,
            crash_times=crashes, restart_at=now + delay,
        )  # fmt: skip
        if changed:
            looping = self.ctx.policy.crash_looping(crashes, now)
            log.warning(
                "instance %s %s; restart in %.0f s%s",
                inst.id,
                exit_text,
                delay,
                " (crash loop)" if looping else "",
            )
        return changed

    def _restart_async(self, inst: Instance) -> None:
        self._restarting.add(inst.id)
        thread = threading.Thread(
            target=self._restart, args=(inst,), daemon=True, name=f"restart-{inst.id}"
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _restart(self, inst: Instance) -> None:
        try:
            restarted = self._start_again(inst)
            if restarted is None:
                return
            release = self.ctx.state.release(inst.service, inst.release)
            svc = self.ctx.state.service(inst.service)
            failures = wait_healthy(
                self.ctx, replace(svc, spec=release.spec), [restarted], log_emitter(log)
            )
            self._finish(restarted, ok=not failures)
        except Exception as exc:
            log.exception("restart of %s failed", inst.id)
            self._back_to_crashed(inst.id, f"restart failed: {exc}")
        finally:
            self._restarting.discard(inst.id)

    def _back_to_crashed(self, inst_id: str, reason: str) -> None:
        now = self.ctx.clock.now()
        current = self.ctx.state.instance(inst_id)
        crashes = (*self.ctx.policy.recent(current.crash_times, now), now)
        self.ctx.state.transition(
            inst_id, (InstanceState.RESTARTING,), state=InstanceState.CRASHED, last_exit=reason,
            crash_times=crashes, restart_at=now + self.ctx.policy.delay(crashes, now),
        )  # fmt: skip

    def _start_again(self, inst: Instance) -> Instance | None:
        """Under the service's claim: crashed -> restarting, new process, pid recorded."""
        owner = f"restart of {inst.id}"
        if not self.claims.try_claim(inst.service, owner):
            return None  # an operation owns the service; the next tick looks again
        try:
            svc = self.ctx.state.service(inst.service)
            if svc.current_release != inst.release:
                self.ctx.state.transition(
                    inst.id, (InstanceState.CRASHED,), state=InstanceState.STOPPED
                )
                return None
            if not self.ctx.state.transition(
                inst.id,
                (InstanceState.CRASHED,),
                state=InstanceState.RESTARTING,
                restarts=inst.restarts + 1,
            ):
                return None
            release = self.ctx.state.release(inst.service, inst.release)
            return start_instance(self.ctx, svc, release, existing=inst)
        finally:
            self.claims.free([inst.service], owner)

    def _finish(self, inst: Instance, ok: bool) -> None:
        if ok:
            if self.ctx.state.transition(
                inst.id, (InstanceState.RESTARTING,), state=InstanceState.RUNNING
            ):
                sync_routes(self.ctx)
            return  # else an operation took the instance over and stops it by its current pid
        self.ctx.runtime.stop(handle_of(inst), 5.0)
        self._back_to_crashed(inst.id, "failed its health check after a restart")
