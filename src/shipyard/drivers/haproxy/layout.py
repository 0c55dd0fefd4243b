"""What the HAProxy config declares apart from servers: backend slots and internal ports. Pure.

HAProxy 2.6 cannot create a backend or a listener at runtime, so the config declares more than
the table needs and the maps (``hosts.map``, ``ports.map``) pick among them at runtime:

- **Slots.** Three pools of pre-declared backends, one per :data:`Kind`: ``be_h<N>`` (HTTP,
  HTTP health check whose path and Host come from ``health.map``/``checkhost.map``), ``be_c<N>``
  (HTTP, TCP connect check: a web service without a health check path) and ``be_t<N>`` (TCP).
  Each service owns one slot of its kind; the assignment is persisted (``layout.json``) because
  it outlives the daemon. A service whose kind changes moves to a slot of the new kind.
- **Internal ports.** One TCP frontend binds port ranges on 127.0.0.1 and routes by
  ``dst_port`` through ``ports.map``. With a port base (``EdgeOptions.internal_port_base``) it
  binds the region ``[base, top]``, ``top`` leaving headroom above the highest port in use, so
  ports allocated upwards from the base normally need no reload; any other port is bound
  exactly (an "extra" port, one reload when it first appears).

Only the pool sizes and the bound ports reach the config file's skeleton: taking a spare slot
or a port inside the bound ranges changes maps and servers only, hence no reload. Pools and
the port region only grow while HAProxy runs; :func:`compact` (applied when a reload is needed
anyway) tops them up and drops extra ports nothing uses any more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable

Kind = Literal["c", "h", "t"]
KINDS: tuple[Kind, ...] = ("c", "h", "t")
PORT_MAX = 65535

_SLOT = re.compile(r"be_([cht])(0|[1-9][0-9]*)")


def kind_of(backend: Backend) -> Kind:
    """``t`` for TCP, ``h`` for HTTP with a health check path, ``c`` for HTTP without one."""
    if backend.mode == "tcp":
        return "t"
    return "h" if backend.health_path else "c"


def slot_name(kind: Kind, index: int) -> str:
    return f"be_{kind}{index}"


def parse_slot(name: str) -> tuple[Kind, int] | None:
    match = _SLOT.fullmatch(name)
    if match is None:
        return None
    return cast(Kind, match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Policy:
    """How pools and the internal port region grow (from EdgeOptions)."""

    spare: int = 16  # a pool grows to hold at least this many free slots (and 25 % of its use)
    port_base: int | None = None  # None: bind exactly the ports in use, no region
    port_limit: int = 32768  # the region is [port_base, port_limit); 32768: Linux ephemeral start
    port_block: int = 64  # the region's top grows in blocks of this many ports


@dataclass(frozen=True)
class Layout:
    """Pool sizes, bound internal ports and the service -> slot assignment."""

    pools: Mapping[Kind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    port_base: int | None = None
    port_top: int | None = None  # the region is [port_base, port_top] when both are set
    extra_ports: tuple[int, ...] = ()  # sorted; bound one by one, outside the region
    slots: Mapping[str, str] = field(default_factory=dict)  # service name -> slot name

    def size(self, kind: Kind) -> int:
        return self.pools.get(kind, 0)

    def slot_names(self) -> list[str]:
        """Every declared slot, in config order."""
        return [slot_name(k, i) for k in KINDS for i in range(self.size(k))]

    def services_by_slot(self) -> dict[str, str]:
        return {slot: service for service, slot in self.slots.items()}

    def port_ranges(self) -> tuple[tuple[int, int], ...]:
        """The bound ports as sorted inclusive ranges (adjacent ranges merged)."""
        ranges: list[tuple[int, int]] = []
        if self.port_base is not None and self.port_top is not None:
            ranges.append((self.port_base, self.port_top))
        ranges += [(p, p) for p in self.extra_ports]
        return merge_ranges(ranges)

    def binds(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.port_ranges())

    def skeleton(self) -> tuple[object, ...]:
        """What the config file depends on (the assignment lives in maps only)."""
        return (tuple(self.size(k) for k in KINDS), self.port_ranges())

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "pools": {k: self.size(k) for k in KINDS},
                "port_base": self.port_base,
                "port_top": self.port_top,
                "extra_ports": list(self.extra_ports),
                "slots": dict(sorted(self.slots.items())),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Layout:
        """Parse ``layout.json``; raises EdgeError if it is not a layout this code wrote."""
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("version") != 1:
                raise ValueError(f"version {data.get('version')!r}")
            pools = {k: int(data["pools"].get(k, 0)) for k in KINDS}
            base, top = data.get("port_base"), data.get("port_top")
            layout = cls(
                pools=pools,
                port_base=None if base is None else int(base),
                port_top=None if top is None else int(top),
                extra_ports=tuple(sorted({int(p) for p in data.get("extra_ports", [])})),
                slots={str(s): str(v) for s, v in dict(data.get("slots", {})).items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EdgeError(f"unreadable edge layout file: {exc}") from exc
        for service, slot in layout.slots.items():
            parsed = parse_slot(slot)
            if parsed is None or parsed[1] >= layout.size(parsed[0]):
                raise EdgeError(f"edge layout file: bad slot {slot!r} for {service!r}")
        return layout


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def plan_layout(prev: Layout, table: RoutingTable, policy: Policy) -> Layout:
    """The smallest change to ``prev`` that can serve ``table``.

    Services keep their slot while their kind does not change; a new (or moved) service takes
    the lowest free slot of its kind, preferring slots nobody released in this same step (a
    released slot may still hold the old owner's servers; the sync removes them before routing
    to it). A pool with no free slot grows; so does the port region. Extra ports stay bound
    even once unused (unbinding them would need a reload); :func:`compact` drops them.
    """
    slots: dict[str, str] = {}
    taken: dict[Kind, set[int]] = {k: set() for k in KINDS}
    for backend in table.backends:
        current = prev.slots.get(backend.name)
        parsed = parse_slot(current) if current else None
        kind = kind_of(backend)
        if (
            parsed is not None
            and parsed[0] == kind
            and parsed[1] < prev.size(kind)
            and parsed[1] not in taken[kind]
        ):
            slots[backend.name] = slot_name(*parsed)
            taken[kind].add(parsed[1])
    released = {
        parse_slot(slot) for service, slot in prev.slots.items() if slots.get(service) != slot
    }
    for backend in sorted(table.backends, key=lambda b: b.name):
        if backend.name in slots:
            continue
        kind = kind_of(backend)
        avoid = {p[1] for p in released if p is not None and p[0] == kind}
        index = _lowest_free(taken[kind] | avoid)
        if index >= prev.size(kind) and _lowest_free(taken[kind]) < prev.size(kind):
            index = _lowest_free(taken[kind])  # reusing a released slot beats a reload
        slots[backend.name] = slot_name(kind, index)
        taken[kind].add(index)
    pools = dict(prev.pools)
    for kind in KINDS:
        needed = max(taken[kind], default=-1) + 1
        if needed > prev.size(kind):
            pools[kind] = _pool_target(needed, len(taken[kind]), policy)
    for kind in KINDS:
        pools.setdefault(kind, 0)
    base, top = _region(prev, policy)
    ports = [b.internal_port for b in table.backends]
    managed = [p for p in ports if _in_region(p, policy)]
    if base is not None and top is not None and managed and max(managed) > top:
        top = _region_top(max(managed), len(managed), policy)
    extras = set(prev.extra_ports) if base == prev.port_base else set()
    extras |= {p for p in ports if not _in_region(p, policy)}
    return Layout(pools, base, top, tuple(sorted(extras)), slots)


def compact(layout: Layout, table: RoutingTable, policy: Policy) -> Layout:
    """``layout`` for a reload that happens anyway: every pool gets its headroom of free slots
    back, so does the port region, and extra ports nothing uses any more are dropped."""
    pools = dict(layout.pools)
    assigned = [p for p in map(parse_slot, layout.slots.values()) if p is not None]
    for kind in KINDS:
        used = [index for k, index in assigned if k == kind]
        target = _pool_target(max(used, default=-1) + 1, len(used), policy)
        pools[kind] = max(layout.size(kind), target)
    ports = {b.internal_port for b in table.backends}
    managed = [p for p in ports if _in_region(p, policy)]
    top = layout.port_top
    if layout.port_base is not None and top is not None:
        highest = max(managed) if managed else None
        top = max(top, _region_top(highest, len(managed), policy))
    extras = tuple(sorted(p for p in layout.extra_ports if p in ports))
    return replace(layout, pools=pools, port_top=top, extra_ports=extras)


def initial_layout(policy: Policy) -> Layout:
    """The layout of a fresh edge directory: empty pools; the first region block."""
    if policy.port_base is None:
        return Layout()
    return Layout(port_base=policy.port_base, port_top=_region_top(None, 0, policy))


def _lowest_free(taken: set[int]) -> int:
    index = 0
    while index in taken:
        index += 1
    return index


def _pool_target(needed: int, used: int, policy: Policy) -> int:
    """A size with room for ``max(spare, used // 4)`` more services beyond ``needed`` slots."""
    return needed + max(policy.spare, used // 4)


def _in_region(port: int, policy: Policy) -> bool:
    return policy.port_base is not None and policy.port_base <= port < policy.port_limit


def _region(prev: Layout, policy: Policy) -> tuple[int | None, int | None]:
    if policy.port_base is None:
        return None, None
    if prev.port_base == policy.port_base and prev.port_top is not None:
        return prev.port_base, prev.port_top
    return policy.port_base, _region_top(None, 0, policy)


def _region_top(highest: int | None, used: int, policy: Policy) -> int:
    """The region's top for ports up to ``highest``: headroom of ``max(block, used // 4)``
    ports above it, rounded up to whole blocks, capped below ``port_limit``."""
    assert policy.port_base is not None
    span = 0 if highest is None else highest - policy.port_base + 1
    wanted = span + max(policy.port_block, used // 4)
    blocks = -(-wanted // policy.port_block)
    return min(policy.port_base + blocks * policy.port_block, policy.port_limit) - 1
