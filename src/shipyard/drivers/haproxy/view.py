"""The runtime state HAProxy should have (servers per slot, map entries) and the ordered changes
that get it there from what it has. Pure: the edge executes the plan on the runtime API.

Maps (one entry per line, ``key value``, written beside the runtime change):

- ``hosts.map``: public host (lowercase) -> slot; the public frontend's ``use_backend``.
- ``ports.map``: internal port -> slot; the internal frontend's ``use_backend``.
- ``health.map``: ``be_h`` slot -> HTTP health check path (default ``/``).
- ``checkhost.map``: ``be_h`` slot -> Host header of health checks (default ``localhost``).
- ``hold.map``: slot -> milliseconds a request waits while the slot has no usable server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from shipyard.drivers.haproxy.layout import Layout, kind_of
from shipyard.route.table import RoutingTable, Server

MapName = Literal["hosts", "ports", "health", "checkhost", "hold"]
MAPS: tuple[MapName, ...] = ("hosts", "ports", "health", "checkhost", "hold")
ROUTE_MAPS: tuple[MapName, ...] = ("hosts", "ports")
CHECK_MAPS: tuple[MapName, ...] = ("health", "checkhost")
DUPLICATE = "\0duplicate"  # a key HAProxy holds more than once (``add map`` twice)


@dataclass(frozen=True)
class Observed:
    """A server as the runtime has it; ``state`` "other" = none of the table's states."""

    address: str
    port: int
    state: str


@dataclass(frozen=True)
class Desired:
    servers: Mapping[str, Mapping[str, Server]]  # every declared slot -> server name -> server
    maps: Mapping[MapName, Mapping[str, str]]


@dataclass(frozen=True)
class Current:
    servers: Mapping[str, Mapping[str, Observed]]  # slot -> server name -> server
    maps: Mapping[MapName, Mapping[str, str]]  # value DUPLICATE: the key is there twice


def desired(table: RoutingTable, layout: Layout) -> Desired:
    """What HAProxy runs for ``table`` given the slot assignment in ``layout``."""
    servers: dict[str, dict[str, Server]] = {slot: {} for slot in layout.slot_names()}
    maps: dict[MapName, dict[str, str]] = {name: {} for name in MAPS}
    for backend in table.backends:
        slot = layout.slots[backend.name]
        servers[slot] = {s.name: s for s in backend.servers}
        for host in backend.public_hosts:
            maps["hosts"][host.lower()] = slot
        maps["ports"][str(backend.internal_port)] = slot
        if backend.hold_s > 0:
            maps["hold"][slot] = str(round(backend.hold_s * 1000))
        if kind_of(backend) == "h" and backend.health_path:
            maps["health"][slot] = backend.health_path
            if backend.health_host:
                maps["checkhost"][slot] = backend.health_host.lower()
    return Desired(servers, maps)


def as_current(want: Desired) -> Current:
    """The state HAProxy has once ``want`` is applied (the incremental baseline)."""
    return Current(
        {
            slot: {n: Observed(s.address, s.port, s.state) for n, s in servers.items()}
            for slot, servers in want.servers.items()
        },
        want.maps,
    )


def render_map(entries: Mapping[str, str]) -> str:
    """A map file: one ``key value`` line per entry, ports in numeric order."""
    keys = sorted(entries, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))
    return "".join(f"{key} {entries[key]}\n" for key in keys)


MapOp = tuple[Literal["add", "set", "del"], MapName, str, str]
ServerRef = tuple[str, str]  # (slot, server name)


@dataclass
class SyncPlan:
    """Runtime changes, in the order that keeps traffic flowing:

    1. ``check_maps``: health paths/hosts for slots (before their servers start checking);
    2. ``early_deletes``: leftovers in a slot about to be routed to for the first time;
    3. ``adds`` (``recreate``: same name, new address: delete first) and ``states``;
    4. ``route_maps``: host and port entries (new slots have their servers by now);
    5. ``late_deletes``: servers leaving (after the maps stopped routing to removed slots);
    6. ``stale_check_maps``: health entries of released slots.
    """

    check_maps: list[MapOp] = field(default_factory=list)
    early_deletes: list[ServerRef] = field(default_factory=list)
    adds: list[tuple[str, Server, bool]] = field(default_factory=list)
    states: list[tuple[str, Server]] = field(default_factory=list)
    route_maps: list[MapOp] = field(default_factory=list)
    late_deletes: list[ServerRef] = field(default_factory=list)
    stale_check_maps: list[MapOp] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(
            (self.check_maps, self.early_deletes, self.adds, self.states, self.route_maps,
             self.late_deletes, self.stale_check_maps)
        )  # fmt: skip

    def touched_slots(self) -> set[str]:
        refs = [*self.early_deletes, *self.late_deletes]
        return {slot for slot, _ in refs} | {s for s, *_ in self.adds} | {s for s, _ in self.states}

    def touched_keys(self) -> dict[MapName, set[str]]:
        keys: dict[MapName, set[str]] = {name: set() for name in MAPS}
        for _, name, key, _ in (*self.check_maps, *self.route_maps, *self.stale_check_maps):
            keys[name].add(key)
        return keys


def plan_sync(current: Current, want: Desired, slots: Iterable[str] | None = None) -> SyncPlan:
    """The changes from ``current`` to ``want``; only ``slots`` (default: all of ``want``'s and
    ``current``'s) are compared for servers. Maps are always compared whole (in memory)."""
    plan = SyncPlan()
    fresh = _fresh_slots(current, want)
    for map_name in MAPS:
        ops = _map_ops(map_name, current.maps.get(map_name, {}), want.maps.get(map_name, {}))
        puts, dels = [op for op in ops if op[0] != "del"], [op for op in ops if op[0] == "del"]
        if map_name in CHECK_MAPS:
            plan.check_maps += puts
            plan.stale_check_maps += dels
        else:
            plan.route_maps += puts + dels
    compared = set(want.servers) | set(current.servers) if slots is None else set(slots)
    for slot in sorted(compared):
        running = current.servers.get(slot, {})
        wanted = want.servers.get(slot, {})
        for name, server in wanted.items():
            cur = running.get(name)
            if cur is None:
                plan.adds.append((slot, server, False))
            elif (cur.address, cur.port) != (server.address, server.port):
                plan.adds.append((slot, server, True))
            elif cur.state != server.state:
                plan.states.append((slot, server))
        leaving = [(slot, name) for name in sorted(running) if name not in wanted]
        (plan.early_deletes if slot in fresh else plan.late_deletes).extend(leaving)
    return plan


def _fresh_slots(current: Current, want: Desired) -> set[str]:
    """Slots about to be routed to by keys none of which routes to them yet (a new or moved
    service), so whatever servers they still hold are not its own."""
    routed: set[str] = set()
    kept: set[str] = set()
    for name in ROUTE_MAPS:
        running = current.maps.get(name, {})
        for key, slot in want.maps.get(name, {}).items():
            routed.add(slot)
            if running.get(key) == slot:
                kept.add(slot)
    return routed - kept


def mismatches(
    servers: Mapping[str, Mapping[str, Observed]],
    entries: Mapping[MapName, Mapping[str, str | None]],
    want: Desired,
) -> list[str]:
    """What of a partial read-back (the servers of some slots; some map keys, None = absent)
    differs from ``want``; empty if it all matches."""
    problems: list[str] = []
    for slot, running in sorted(servers.items()):
        wanted = want.servers.get(slot, {})
        for name in sorted(set(running) | set(wanted)):
            cur, server = running.get(name), wanted.get(name)
            if cur is None or server is None or cur != Observed(server.address, server.port,
                                                                server.state):  # fmt: skip
                problems.append(f"server {slot}/{name}")
    for map_name, values in entries.items():
        for key, value in sorted(values.items()):
            if value != want.maps.get(map_name, {}).get(key):
                problems.append(f"{map_name}.map {key}")
    return problems


def _map_ops(name: MapName, cur: Mapping[str, str], want: Mapping[str, str]) -> list[MapOp]:
    ops: list[MapOp] = []
    for key in sorted(want):
        value = want[key]
        if key not in cur:
            ops.append(("add", name, key, value))
        elif cur[key] != value:  # also DUPLICATE: ``set map`` sets every entry of the key
            ops.append(("set", name, key, value))
    ops += [("del", name, key, "") for key in sorted(cur) if key not in want]
    return ops
