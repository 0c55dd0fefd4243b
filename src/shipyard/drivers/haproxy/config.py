"""Render HAProxy 2.6 configuration from a RoutingTable and a Layout. Pure: no I/O, golden-file
tested.

Layout of the rendered file (see layout.py for slots and ports, view.py for the maps):

- ``global``: admin stats socket (``expose-fd listeners`` so reloads hand listeners over
  without refusing connections), the server-state file and ``hard-stop-after`` so old workers
  left behind by a reload are bounded.
- named ``defaults``: ``d_http`` and ``d_tcp`` (HTTP-only options would otherwise warn for every
  TCP proxy) and ``d_hchk``, ``d_http`` plus the HTTP health check whose path and Host header are
  looked up per backend in ``health.map``/``checkhost.map`` (so changing them is a map change).
- ``fe_public``: Host (lowercased, port stripped) -> slot through ``hosts.map``; a host not in
  the map gets a 404 text answer naming it, never a private service.
- ``fe_internal``: one TCP frontend binding every internal port (ranges) on 127.0.0.1; the
  destination port picks the slot through ``ports.map`` (a TCP frontend may hand over to an
  HTTP backend); a port not in the map is refused.
- one ``backend`` line per slot (``be_c<N>``, ``be_h<N>``, ``be_t<N>``), with the servers of the
  service owning it.

The file does not grow a line per host: hosts, ports and health paths live in map files, which
the edge writes beside the runtime ``add/set/del map`` change. Server lines are built by
:func:`server_args`, which the runtime ``add server`` command uses too: dynamic servers do not
inherit ``default-server``, so the file and the runtime must be given the same parameters.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.drivers.haproxy.layout import KINDS, Layout, Policy, slot_name
from shipyard.drivers.haproxy.view import MAPS, MapName, render_map
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server

CHECK_PARAMS = "check inter 2s fall 3 rise 2"
# What a server declared in the config gets by default, and a server created with `add server`
# does not (2.6): an idle-connection pool. Without it every request to a dynamic server opens
# a new backend connection: measured half the throughput (3.8k vs 7.5k req/s, bench/edge_overhead).
POOL_PARAMS = "pool-max-conn -1 pool-purge-delay 5s"
HARD_STOP_AFTER = "120s"
SERVER_LINE_PREFIX = "    server "
PUBLIC_FRONTEND = "fe_public"
INTERNAL_FRONTEND = "fe_internal"
NOT_FOUND_TEXT = "No service is routed for host '%[var(txn.host)]'.\\n"
DEFAULTS_OF_KIND = {"c": "d_http", "h": "d_hchk", "t": "d_tcp"}
CHECK_HOST_DEFAULT = "localhost"


@dataclass(frozen=True)
class EdgeOptions:
    dir: Path
    http_bind: str = "127.0.0.1"
    http_port: int = 8080
    maxconn: int = 4096
    # Internal ports: with a base, the region [base, limit) is bound in blocks with headroom
    # (ports allocated upwards from the base need no reload); None binds exactly the ports used.
    internal_port_base: int | None = None
    internal_port_limit: int = 32768
    internal_port_block: int = 64
    pool_spare: int = 16  # spare backends kept per pool (and 25 % of the pool's use)

    @property
    def policy(self) -> Policy:
        return Policy(
            spare=self.pool_spare,
            port_base=self.internal_port_base,
            port_limit=self.internal_port_limit,
            port_block=self.internal_port_block,
        )

    @property
    def config_path(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def lua_path(self) -> Path:
        return self.dir / "hold.lua"

    @property
    def admin_socket(self) -> Path:
        return self.dir / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.dir / "master.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "haproxy.pid"

    @property
    def state_file(self) -> Path:
        return self.dir / "server-state"

    @property
    def log_file(self) -> Path:
        return self.dir / "haproxy.log"

    @property
    def layout_file(self) -> Path:
        return self.dir / "layout.json"

    def map_path(self, name: MapName, map_dir: Path | None = None) -> Path:
        return (map_dir or self.dir) / f"{name}.map"


def server_args(backend: Backend | None, server: Server) -> str:
    """Everything after ``server <name>``: address, checks, weight and admin state.

    ``drain`` is ``weight 0`` (no new requests, established ones finish); ``maint`` is
    ``disabled``. Health-check rules belong to the backend (its defaults section), so only
    ``check`` and its timing are per server.
    """
    del backend  # same parameters for every kind today; kept so callers never have to change
    weight = 0 if server.state == "drain" else 1
    args = f"{_hostport(server.address, server.port)} {CHECK_PARAMS} {POOL_PARAMS} weight {weight}"
    if server.state == "maint":
        args += " disabled"
    return args


def render_config(
    table: RoutingTable,
    layout: Layout,
    opts: EdgeOptions,
    *,
    map_dir: Path | None = None,
    validate: bool = True,
) -> str:
    """The whole haproxy.cfg for ``table`` placed in ``layout``'s slots (maps under ``map_dir``,
    default ``opts.dir``); raises EdgeError on values unsafe in a config (``validate=False``:
    the caller has run validate_table and validate_options already)."""
    if validate:
        validate_table(table)
        validate_options(opts)
    missing = [b.name for b in table.backends if b.name not in layout.slots]
    if missing:
        raise EdgeError(f"no slot assigned to {', '.join(missing)}")
    maps = {name: opts.map_path(name, map_dir) for name in MAPS}
    sections = [
        _global(opts),
        _defaults_http("d_http"),
        _defaults_http("d_hchk") + _health_check(maps["health"], maps["checkhost"]),
        _defaults_tcp(),
        _public_frontend(opts, maps["hosts"]),
    ]
    if layout.port_ranges():
        sections.append(_internal_frontend(layout, maps["ports"]))
    by_slot = {layout.slots[b.name]: b for b in table.backends}
    for kind in KINDS:
        for index in range(layout.size(kind)):
            slot = slot_name(kind, index)
            sections.append(_backend(slot, DEFAULTS_OF_KIND[kind], by_slot.get(slot), maps["hold"]))
    return "\n".join(sections)


def strip_servers(config: str) -> str:
    """The config without its server lines: if this differs, a reload is needed."""
    lines = config.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(SERVER_LINE_PREFIX))


def render_maps(maps: Mapping[MapName, Mapping[str, str]]) -> dict[MapName, str]:
    return {name: render_map(maps.get(name, {})) for name in MAPS}


def _global(opts: EdgeOptions) -> str:
    return (
        "# Generated by Shipyard; edits are overwritten.\n"
        "global\n"
        f"    stats socket {opts.admin_socket} mode 600 level admin expose-fd listeners\n"
        "    stats timeout 30s\n"
        f"    server-state-file {opts.state_file}\n"
        f"    hard-stop-after {HARD_STOP_AFTER}\n"
        f"    maxconn {opts.maxconn}\n"
        # Never share a listening port with another process (SO_REUSEPORT would split its
        # traffic with whatever else binds it); reloads take the listeners over through the
        # master instead.
        "    noreuseport\n"
        f"    lua-load {opts.lua_path}\n"
    )


_COMMON_DEFAULTS = (
    "    timeout connect 5s\n"
    "    timeout client 60s\n"
    "    timeout server 60s\n"
    "    timeout queue 30s\n"
    "    retries 3\n"
    "    option redispatch 1\n"
    "    balance roundrobin\n"
    "    load-server-state-from-file global\n"
)


def _defaults_http(name: str) -> str:
    # Only conn-failure retries: other retry-on conditions buffer the request and would replay
    # non-idempotent methods.
    return (
        f"defaults {name}\n"
        "    mode http\n"
        f"{_COMMON_DEFAULTS}"
        "    timeout http-request 10s\n"
        "    timeout http-keep-alive 10s\n"
        "    retry-on conn-failure\n"
        "    option forwardfor\n"
        "    option http-keep-alive\n"
    )


def _health_check(health_map: Path, host_map: Path) -> str:
    return (
        "    option httpchk\n"
        f"    http-check send meth GET uri-lf %[be_name,map({health_map},/)] ver HTTP/1.1"
        f" hdr Host %[be_name,map({host_map},{CHECK_HOST_DEFAULT})]\n"
        "    http-check expect status 200-399\n"
    )


def _defaults_tcp() -> str:
    return f"defaults d_tcp\n    mode tcp\n{_COMMON_DEFAULTS}"


def _public_frontend(opts: EdgeOptions, hosts: Path) -> str:
    return (
        f"frontend {PUBLIC_FRONTEND} from d_http\n"
        f"    bind {opts.http_bind}:{opts.http_port}\n"
        "    http-request set-header X-Forwarded-Proto http\n"
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n"
        "    http-request return status 404 content-type text/plain"
        f' lf-string "{NOT_FOUND_TEXT}"'
        f" if !{{ var(txn.host),map({hosts}) -m found }}\n"
        f"    use_backend %[var(txn.host),map({hosts})]\n"
    )


def _internal_frontend(layout: Layout, ports: Path) -> str:
    lines = [f"frontend {INTERNAL_FRONTEND} from d_tcp"]
    for lo, hi in layout.port_ranges():
        lines.append(f"    bind 127.0.0.1:{lo}" + (f"-{hi}" if hi > lo else ""))
    lines += [
        "    timeout http-request 10s",  # for the HTTP backends this frontend hands over to
        f"    tcp-request connection reject if !{{ dst_port,map({ports}) -m found }}",
        f"    use_backend %[dst_port,map({ports})]",
    ]
    return "\n".join(lines) + "\n"


def _backend(slot: str, defaults: str, backend: Backend | None, hold: Path) -> str:
    rules = "tcp-request content" if defaults == "d_tcp" else "http-request"
    lines = [
        f"backend {slot} from {defaults}",
        # No usable server and a hold time in hold.map: wait for one (HOLD_LUA), not 503.
        f"    {rules} set-var(txn.shipyard_hold) be_name,map({hold}) if {{ nbsrv eq 0 }}",
        f"    {rules} lua.shipyard_hold if {{ var(txn.shipyard_hold) -m found }}",
    ]
    for server in backend.servers if backend else ():
        lines.append(f"{SERVER_LINE_PREFIX}{server.name} {server_args(backend, server)}")
    return "\n".join(lines) + "\n"


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
_PATH = re.compile(r"/[A-Za-z0-9._~!&()*+,;=:@%/?-]*")
_SERVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")  # HAProxy's own rule for proxy/server names
_IPV4 = re.compile(r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}")
_DIR = re.compile(r"/[A-Za-z0-9._/+@-]*")  # the edge dir appears unquoted in the config


def validate_table(table: RoutingTable) -> None:
    """Reject values that would break out of their config token, and ambiguous tables."""
    _unique([b.name for b in table.backends], "backend name")
    _unique([b.internal_port for b in table.backends], "internal port")
    _unique([h.lower() for b in table.backends for h in b.public_hosts], "public host")
    for backend in table.backends:
        if backend.mode == "tcp" and backend.public_hosts:
            raise EdgeError(f"tcp service {backend.name} cannot have public HTTP hosts")
        _unique([s.name for s in backend.servers], f"server name in {backend.name}")
        _check(_NAME, backend.name, "backend name")
        for host in backend.public_hosts:
            _check(_HOST, host.lower(), f"public host of {backend.name}")
        if backend.health_path is not None:
            _check(_PATH, backend.health_path, f"health path of {backend.name}")
        if backend.health_host:
            _check(_HOST, backend.health_host.lower(), f"health host of {backend.name}")
        if backend.internal_port < 1:
            raise EdgeError(f"invalid internal port of {backend.name}: {backend.internal_port}")
        for server in backend.servers:
            _check(_SERVER, server.name, f"server name in {backend.name}")
            where = f"{backend.name}/{server.name}"
            if not _is_ip(server.address):
                raise EdgeError(
                    f"invalid address of {where}: {server.address!r} (an IP address)",
                    fields={"value": server.address},
                )
            if not 1 <= server.port <= 65535:
                raise EdgeError(f"invalid port of {where}: {server.port}")


def _is_ip(address: str) -> bool:
    if _IPV4.fullmatch(address):
        return all(int(part) <= 255 for part in address.split("."))
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def validate_options(opts: EdgeOptions) -> None:
    """The edge directory and the public listener go into the config unquoted."""
    _check(_DIR, str(opts.dir), "edge directory (letters, digits and ._/+@- only)")
    _check(_SERVER, opts.http_bind, "HTTP bind address")


def _unique(values: Sequence[object], what: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise EdgeError(f"duplicate {what}: {value!r}", fields={"value": str(value)})
        seen.add(value)


def _check(pattern: re.Pattern[str], value: str, what: str) -> None:
    if not pattern.fullmatch(value):
        raise EdgeError(f"invalid {what}: {value!r}", fields={"value": value})


# Loaded by every config (``lua-load``): holds a request while its backend has no usable server
# (nbsrv == 0), polling every 50 ms up to the backend's hold.map time, so a recreate rollout or
# a restart makes requests wait instead of failing. Health checks decide "usable", so a request
# never reaches an instance before HAProxy's check passed.
HOLD_LUA = """\
-- Generated by Shipyard.
core.register_action("shipyard_hold", {"http-req", "tcp-req"}, function(txn)
  local limit = tonumber(txn:get_var("txn.shipyard_hold")) or 0
  local waited = 0
  while waited < limit and txn.f:nbsrv() == 0 do
    core.msleep(50)
    waited = waited + 50
  end
end, 0)
"""
