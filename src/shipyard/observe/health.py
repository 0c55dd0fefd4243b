"""Health probes: what "healthy" means for an instance.

HTTP: GET healthCheckPath with Host set to the service's external hostname (apps such as Django
check ALLOWED_HOSTS), healthy on 2xx/3xx within the timeout (Render: 5 s). Without a path: a TCP
connect to the instance's port.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    detail: str  # "HTTP 200", "HTTP 500", "connection refused", ...


@dataclass(frozen=True)
class Probe:
    port: int
    path: str | None
    host_header: str
    timeout_s: float = 5.0
    address: str = "127.0.0.1"

    def check(self) -> ProbeResult:
        if self.path is None:
            return tcp_probe(self.address, self.port, self.timeout_s)
        return http_probe(self.address, self.port, self.path, self.host_header, self.timeout_s)


def tcp_probe(address: str, port: int, timeout_s: float) -> ProbeResult:
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return ProbeResult(True, f"TCP connect to port {port} succeeded")
    except OSError as exc:
        return ProbeResult(False, f"TCP connect to port {port}: {_reason(exc)}")


def http_probe(address: str, port: int, path: str, host: str, timeout_s: float) -> ProbeResult:
    conn = http.client.HTTPConnection(address, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "shipyard-health/1"})
        response = conn.getresponse()
        response.read(65536)
        ok = 200 <= response.status < 400
        return ProbeResult(ok, f"GET {path} answered HTTP {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, f"GET {path} on port {port}: {_reason(exc)}")
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
