"""The desired routing table: hosts -> backends -> servers. Pure data; the edge applies it.

One Backend per service that listens on a port (web and pserv). Every backend gets an internal
listener on 127.0.0.1:internal_port, which other services reach through ``fromService``
(host/port/hostport). Only backends with ``public_hosts`` are routed from the public HTTP
listener; a private service therefore has none and is unreachable from the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ServerState = Literal["ready", "drain", "maint"]
Mode = Literal["http", "tcp"]


@dataclass(frozen=True)
class Server:
    name: str  # instance id, unique within the backend, e.g. "web-r3-a1b2"
    address: str  # "127.0.0.1"
    port: int
    state: ServerState = "ready"


@dataclass(frozen=True)
class Backend:
    name: str  # the service name (a DNS label: [a-z0-9-])
    mode: Mode
    internal_port: int
    public_hosts: tuple[str, ...] = ()
    health_path: str | None = None  # HTTP check path; None = TCP connect check
    health_host: str = ""  # Host header sent by HTTP checks
    servers: tuple[Server, ...] = ()
    # While no server is usable (a recreate rollout, a restart), hold each request up to this
    # long for one to come UP instead of answering 503 at once; 0 answers at once.
    hold_s: float = 0.0


@dataclass(frozen=True)
class RoutingTable:
    backends: tuple[Backend, ...] = field(default_factory=tuple)

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)


@dataclass(frozen=True)
class ServerStats:
    status: str  # HAProxy's status column: UP, DOWN, DRAIN, MAINT, "no check", ...
    scur: int  # sessions in flight on the server
    qcur: int  # requests queued for the server

    @property
    def idle(self) -> bool:
        return self.scur == 0 and self.qcur == 0


ServerKey = tuple[str, str]  # (service name, server name)


class Router(Protocol):
    """The edge, as the control plane sees it (drivers/haproxy implements it).

    Every method may be called from any thread; ``apply``, ``ensure_running`` and ``stop`` are
    serialised with each other, the observation methods do not wait for them. Failures raise
    EdgeError (a ShipyardError), never a foreign exception.
    """

    def apply(self, table: RoutingTable) -> None:
        """Make the edge route exactly ``table``. Idempotent and blocking: when it returns, the
        config files on disk and the running proxy both match ``table`` (files first, then the
        runtime API). Incremental: only what changed since the last successful apply is sent
        and read back; after any failure the next call repairs everything. Adding or removing
        a service, a server or a domain, or changing a health check path, needs no reload while
        the edge has spare capacity; a reload (hitless) happens only when it runs out.
        Raises EdgeError if the proxy is not running, rejects the table (the running proxy then
        keeps its previous routes) or does not reach the table's state."""

    def check(self, table: RoutingTable) -> None:
        """Raise EdgeError if ``apply(table)`` would be refused (names, hosts, paths, and the
        config through ``haproxy -c`` when the table needs a config change beyond servers and
        maps; its messages are in the error). Changes nothing; fast (plan time)."""

    def ensure_running(self, table: RoutingTable) -> None:
        """Adopt the running proxy (a restarted daemon finds it) or start one, then
        ``apply(table)``. Idempotent and blocking. Raises EdgeError if it cannot start."""

    def server_stats(self, backend: str, server: str) -> ServerStats | None:
        """Stats of one server of service ``backend``; None if the edge has no such server.
        One runtime query: prefer ``all_server_stats`` to look at many."""

    def all_server_stats(self) -> dict[ServerKey, ServerStats]:
        """Stats of every routed server, keyed by (service, server), from one runtime query.
        Raises EdgeError if the proxy does not answer."""

    def old_workers(self) -> int:
        """Workers still finishing requests after a reload (their stats are not visible)."""

    def reloads(self) -> int:
        """How many times the running proxy reloaded its config (failed attempts included).
        Survives a daemon restart; starts over when the proxy itself is restarted."""

    def is_running(self) -> bool:
        """True if the edge proxy runs and answers. Never raises."""

    def stop(self, timeout: float = 10) -> None:
        """Stop the proxy: in-flight requests get ``timeout`` seconds. Idempotent."""
