"""The wiring every control-plane operation receives (built once by the daemon)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shipyard.clock import Clock
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.state import State
from shipyard.route.table import RoutingTable, ServerStats
from shipyard.run.backoff import RestartPolicy
from shipyard.run.runtime import Runtime
from shipyard.settings import Settings


class Edge(Protocol):
    def apply(self, table: RoutingTable) -> None: ...

    def check(self, table: RoutingTable) -> None:
        """Raise EdgeError if ``table`` could not be applied; changes nothing."""

    def ensure_running(self, table: RoutingTable) -> None: ...

    def server_stats(self, backend: str, server: str) -> ServerStats | None: ...

    def old_workers(self) -> int: ...

    def is_running(self) -> bool: ...

    def stop(self, timeout: float = 10) -> None: ...


Emit = Callable[[str, str], None]  # (message, level)


@dataclass
class Context:
    settings: Settings
    state: State
    box: SecretBox
    runtime: Runtime
    edge: Edge
    clock: Clock
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    route_lock: threading.RLock = field(default_factory=threading.RLock)
    port_lock: threading.Lock = field(default_factory=threading.Lock)
