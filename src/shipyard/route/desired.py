"""Derive the routing table from state and hand it to the edge (serialised by one lock)."""

from __future__ import annotations

import socket

from shipyard.context import Context
from shipyard.errors import EdgeError
from shipyard.records import InstanceState, Service
from shipyard.route.table import Backend, RoutingTable, Server, ServerState
from shipyard.settings import INTERNAL_PORT_LIMIT, Settings
from shipyard.store import Store

ROUTED: dict[InstanceState, ServerState] = {
    InstanceState.RUNNING: "ready",
    InstanceState.DRAINING: "drain",
}


PLATFORM_BACKEND = "shipyard-platform"


def platform_backend(settings: Settings, port: int, internal_port: int) -> Backend:
    """The daemon's platform endpoint (controlplane/platform.py) at the platform host; its
    internal port is one of this Shipyard's internal region that no service holds."""
    return Backend(
        name=PLATFORM_BACKEND, mode="http", internal_port=internal_port,
        public_hosts=(settings.platform_host,), health_path="/healthz",
        health_host=settings.platform_host,
        servers=(Server(name="daemon", address="127.0.0.1", port=port),),
    )  # fmt: skip


def desired_table(
    state: Store, settings: Settings, proposed: list[Service] | None = None,
    platform: tuple[int, int] | None = None,
) -> RoutingTable:  # fmt: skip
    """The table for the current state; with ``proposed`` (services as a deploy would make
    them live), the table that deploy would produce, so it can be checked before anything is
    changed. ``platform``: the daemon's platform endpoint (its port, its internal port), routed
    at the platform host."""
    backends = [platform_backend(settings, *platform)] if platform else []
    instances = state.instances(states=tuple(ROUTED))
    services = {s.name: s for s in state.services()}
    services.update({s.name: s for s in proposed or []})
    for svc in sorted(services.values(), key=lambda s: s.name):
        if svc.type not in ("web", "pserv") or svc.internal_port is None:
            continue
        name, web = svc.name, svc.type == "web"
        servers = tuple(
            Server(name=i.id, address="127.0.0.1", port=i.port, state=ROUTED[i.state])
            for i in instances
            if i.service == name
        )
        backends.append(
            Backend(
                name=name,
                mode="http" if web else "tcp",
                internal_port=svc.internal_port,
                public_hosts=(settings.public_host(name), *svc.spec.domains) if web else (),
                health_path=svc.spec.health_check_path if web else None,
                health_host=settings.external_host(svc.type, name),
                servers=servers,
                # a deployed service briefly without a usable instance (recreate, restart)
                # makes requests wait for one rather than fail
                hold_s=settings.request_hold_s if svc.deployed else 0.0,
            )
        )
    return RoutingTable(backends=tuple(backends))


def sync_routes(ctx: Context) -> None:
    """Make the edge match the state. Callers change instance states first, then call this."""
    with ctx.route_lock:
        ctx.edge.apply(desired_table(ctx.state, ctx.settings, platform=platform(ctx)))


def platform(ctx: Context) -> tuple[int, int] | None:
    if ctx.platform_port is None or ctx.platform_internal_port is None:
        return None
    return ctx.platform_port, ctx.platform_internal_port


def allocate_internal_port(ctx: Context, taken: set[int] | None = None) -> int:
    """The stable internal listener port of a new web or private service: the lowest one from
    ``settings.internal_port_base`` up that no service holds (nor ``taken``). The edge binds
    that region with headroom, so a new service normally needs no reload; the kernel hands out
    instance ports from the ephemeral range above it.

    The caller holds ``ctx.port_lock`` until the port is recorded in the state.
    """
    used = ctx.state.used_ports() | {ctx.settings.http_port, ctx.settings.api_port}
    used |= (taken or set()) | {ctx.platform_internal_port or 0}
    port = ctx.settings.internal_port_base
    while port in used:
        port += 1
    if port >= INTERNAL_PORT_LIMIT:
        raise EdgeError(
            f"No internal port left between {ctx.settings.internal_port_base} and "
            f"{INTERNAL_PORT_LIMIT}: lower SHIPYARD_INTERNAL_PORT_BASE.",
        )
    return port


def allocate_port(ctx: Context) -> int:
    """A free loopback port for an instance, from the kernel's ephemeral range, that no
    instance or listener of ours is using.

    The caller holds ``ctx.port_lock`` until the port is recorded in the state.
    """
    used = ctx.state.used_ports() | {ctx.settings.http_port, ctx.settings.api_port}
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in used:
            return port
    raise RuntimeError("no free port found")  # pragma: no cover - 200 collisions in a row
