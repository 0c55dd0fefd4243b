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


class Router(Protocol):
    """The edge, as the control plane sees it (drivers/haproxy implements it).

    Contract: ``apply`` is idempotent and blocking; when it returns, the config file on disk and
    the running proxy both match ``table`` (file first, then the runtime API; a reload only when
    listeners or backends changed). ``check`` changes nothing. Failures raise EdgeError.
    """

    def apply(self, table: RoutingTable) -> None: ...

    def check(self, table: RoutingTable) -> None:
        """Raise EdgeError if ``table`` could not be applied; changes nothing."""

    def ensure_running(self, table: RoutingTable) -> None:
        """Adopt the running proxy or start one, then apply ``table``."""

    def server_stats(self, backend: str, server: str) -> ServerStats | None: ...

    def old_workers(self) -> int:
        """Workers still finishing requests after a reload (their stats are not visible)."""

    def is_running(self) -> bool: ...

    def stop(self, timeout: float = 10) -> None: ...
