"""The runtime sync: bring the running worker to a Desired state over the admin socket.

Apply is incremental: the runtime state of the last successful apply is kept in memory and only
the difference is sent and verified; after adoption, a reload, a restart of HAProxy or any
error, the next apply reads the whole runtime state (one ``show servers state``, one ``show
map`` per map) and repairs it (a full sync). The plans themselves are view.py's (pure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from shipyard.clock import Clock
from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.config import EdgeOptions, server_args
from shipyard.drivers.haproxy.layout import parse_slot
from shipyard.drivers.haproxy.runtime import AdminClient
from shipyard.drivers.haproxy.view import (
    MAPS,
    Current,
    Desired,
    MapName,
    MapOp,
    Observed,
    ServerRef,
    SyncPlan,
    as_current,
    mismatches,
    plan_sync,
)
from shipyard.errors import EdgeError
from shipyard.route.table import Server

VERIFY_ONE_BY_ONE = 16  # above this many touched slots/keys, verify with one full read


class RuntimeSync:
    """Executes sync plans on ``admin`` and reads the result back. ``loaded`` returns the
    config skeleton the running worker loaded (which maps it knows)."""

    def __init__(
        self,
        opts: EdgeOptions,
        admin: AdminClient,
        clock: Clock,
        *,
        del_grace: float,
        loaded: Callable[[], str | None],
    ) -> None:
        self._opts = opts
        self._admin = admin
        self._clock = clock
        self._del_grace = del_grace
        self._loaded = loaded

    def sync(self, want: Desired, last: Current | None, full: bool) -> Current:
        """Make the runtime match ``want``: from ``last`` (the state remembered), or (``full``)
        from what HAProxy reports. Verified; one full repair, then EdgeError if it still
        differs. Returns the runtime state now (to remember for the next sync)."""
        current = self.read_current() if full or last is None else last
        plan = plan_sync(current, want)
        self.execute(plan)
        if plan.empty():  # nothing to change: ``current`` was just read, or was verified
            ok = True
        elif full:
            ok = plan_sync(self.read_current(), want).empty()
        else:
            ok = self.verify(want, plan)
        if not ok:
            self.execute(plan_sync(self.read_current(), want))
            leftover = plan_sync(self.read_current(), want)
            if not leftover.empty():
                raise EdgeError(
                    f"HAProxy runtime state does not match the routing table ({describe(leftover)})"
                )
        return as_current(want)

    def read_current(self) -> Current:
        rows = runtime.servers_state(self._admin)
        servers = {
            slot: {name: Observed(r.addr, r.port, r.state()) for name, r in by_name.items()}
            for slot, by_name in rows.items()
            if parse_slot(slot) is not None
        }
        loaded = self._loaded() or ""
        maps = {
            name: runtime.show_map(self._admin, path) if f"map({path}" in loaded else {}
            for name in MAPS
            for path in [self._opts.map_path(name)]
        }  # a map the config does not use (no internal port bound yet) is unknown to HAProxy
        return Current(servers, maps)

    def verify(self, want: Desired, plan: SyncPlan) -> bool:
        """Read back only what ``plan`` touched: its slots' servers and its map keys."""
        slots = plan.touched_slots()
        if len(slots) > VERIFY_ONE_BY_ONE:
            rows = runtime.servers_state(self._admin)
        else:
            rows = {}
            for slot in slots:
                rows.update(runtime.servers_state(self._admin, slot))
        servers = {
            slot: {n: Observed(r.addr, r.port, r.state()) for n, r in rows.get(slot, {}).items()}
            for slot in slots
        }
        entries: dict[MapName, dict[str, str | None]] = {}
        for name, keys in plan.touched_keys().items():
            path = self._opts.map_path(name)
            if len(keys) > VERIFY_ONE_BY_ONE:
                running = runtime.show_map(self._admin, path)
                entries[name] = {key: running.get(key) for key in keys}
            else:
                entries[name] = {key: runtime.get_map(self._admin, path, key) for key in keys}
        return not mismatches(servers, entries, want)

    def execute(self, plan: SyncPlan) -> None:
        admin, clock, grace = self._admin, self._clock, self._del_grace
        self._map_ops(plan.check_maps)
        runtime.del_servers(admin, plan.early_deletes, clock, grace=grace)
        for slot, server, recreate in plan.adds:
            if recreate:  # same name, new address
                runtime.del_servers(admin, [(slot, server.name)], clock, grace=grace)
            runtime.add_server(admin, slot, server.name, server_args(None, server))
            runtime.enable_health(admin, slot, server.name)
            self._set_state(slot, server)
        for slot, server in plan.states:
            self._set_state(slot, server)
        self._map_ops(plan.route_maps)
        runtime.del_servers(admin, plan.late_deletes, clock, grace=grace)
        self._map_ops(plan.stale_check_maps)

    def _set_state(self, slot: str, server: Server) -> None:
        runtime.set_server_state(self._admin, slot, server.name, server.state)
        if server.state == "ready":
            runtime.set_weight(self._admin, slot, server.name, 1)

    def _map_ops(self, ops: Iterable[MapOp]) -> None:
        """New keys first (one payload per map), then changed keys, then removed keys: the ops
        of one plan step touch distinct keys, so this order is as good as theirs."""
        ops = list(ops)
        adds: dict[MapName, list[tuple[str, str]]] = {}
        for op, name, key, value in ops:
            if op == "add":
                adds.setdefault(name, []).append((key, value))
        for name, entries in adds.items():
            runtime.add_map(self._admin, self._opts.map_path(name), entries)
        for op, name, key, value in ops:
            if op == "set":
                runtime.set_map(self._admin, self._opts.map_path(name), key, value)
        for op, name, key, _ in ops:
            if op == "del":
                runtime.del_map(self._admin, self._opts.map_path(name), key)


def describe(plan: SyncPlan) -> str:
    parts: list[str] = []
    refs: list[ServerRef] = [*plan.early_deletes, *plan.late_deletes]
    if plan.adds:
        parts.append("missing servers " + ", ".join(f"{s}/{srv.name}" for s, srv, _ in plan.adds))
    if plan.states:
        parts.append("server states " + ", ".join(f"{s}/{srv.name}" for s, srv in plan.states))
    if refs:
        parts.append("extra servers " + ", ".join(f"{s}/{n}" for s, n in refs))
    ops = [*plan.check_maps, *plan.route_maps, *plan.stale_check_maps]
    if ops:
        parts.append("map entries " + ", ".join(f"{name}.map {key}" for _, name, key, _ in ops))
    return "; ".join(parts)[:1000]
