"""Derive the routing table from state and hand it to the edge (serialised by one lock)."""

from __future__ import annotations

import json
import socket
from typing import Any

from shipyard.controlplane.context import Context
from shipyard.controlplane.state import State
from shipyard.route.table import Backend, RoutingTable, Server, ServerState
from shipyard.settings import Settings

ROUTED: dict[str, ServerState] = {"running": "ready", "draining": "drain"}


def desired_table(
    state: State, settings: Settings, proposed: list[dict[str, Any]] | None = None
) -> RoutingTable:
    """The table for the current state; with ``proposed`` (service rows as a deploy would make
    them live), the table that deploy would produce, so it can be checked before anything is
    changed."""
    backends = []
    instances = state.instances(states=tuple(ROUTED))
    rows = {s["name"]: s for s in state.services()}
    for row in proposed or []:
        rows[row["name"]] = {**rows.get(row["name"], {}), **row}
    for svc in sorted(rows.values(), key=lambda r: str(r["name"])):
        if svc["type"] not in ("web", "pserv") or svc["internal_port"] is None:
            continue
        spec = json.loads(svc["spec_json"])
        name = svc["name"]
        public = (
            (settings.public_host(name), *spec.get("domains", ())) if svc["type"] == "web" else ()
        )
        servers = tuple(
            Server(name=i.id, address="127.0.0.1", port=i.port, state=ROUTED[i.state])
            for i in instances
            if i.service == name
        )
        backends.append(
            Backend(
                name=name,
                mode="http" if svc["type"] == "web" else "tcp",
                internal_port=svc["internal_port"],
                public_hosts=public,
                health_path=spec.get("health_check_path") if svc["type"] == "web" else None,
                health_host=external_host(settings, svc["type"], name),
                servers=servers,
            )
        )
    return RoutingTable(backends=tuple(backends))


def external_host(settings: Settings, type_: str, name: str) -> str:
    return settings.public_host(name) if type_ == "web" else name


def sync_routes(ctx: Context) -> None:
    """Make the edge match the state. Callers change instance states first, then call this."""
    with ctx.route_lock:
        ctx.edge.apply(desired_table(ctx.state, ctx.settings))


def allocate_port(ctx: Context) -> int:
    """A free loopback port no instance or listener of ours is using.

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
