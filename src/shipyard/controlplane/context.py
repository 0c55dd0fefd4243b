"""The wiring every control-plane operation receives (built once by the daemon)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from shipyard.clock import Clock
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.state import State
from shipyard.route.table import Router
from shipyard.run.backoff import RestartPolicy
from shipyard.run.runtime import Runtime
from shipyard.settings import Settings

Emit = Callable[[str, str], None]  # (message, level)


def log_emitter(logger: logging.Logger) -> Emit:
    """An Emit for work no operation follows (recovery, supervisor): messages go to the log."""

    def emit(message: str, level: str = "info") -> None:
        logger.log(logging.WARNING if level in ("warning", "error") else logging.INFO, "%s",
                   message)  # fmt: skip

    return emit


@dataclass
class Context:
    settings: Settings
    state: State
    box: SecretBox
    runtime: Runtime
    edge: Router
    clock: Clock
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    route_lock: threading.RLock = field(default_factory=threading.RLock)
    port_lock: threading.Lock = field(default_factory=threading.Lock)
