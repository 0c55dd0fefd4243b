"""The dependencies a stage receives, each typed by its protocol: the store, secrets, the
runtime (processes), the router (the edge), the clock and settings. Only
``controlplane/daemon.py`` builds one with concrete drivers; unit tests build one with the
fakes of ``shipyard/testing.py``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipyard.clock import Clock
from shipyard.disk import DiskGuard
from shipyard.route.table import Router
from shipyard.run.backoff import RestartPolicy
from shipyard.run.runtime import Runtime
from shipyard.settings import Settings
from shipyard.store import DataStore, Secrets, Store

if TYPE_CHECKING:
    from shipyard.data.disks import Volumes
    from shipyard.data.engines import DatastoreEngine

Emit = Callable[[str, str], None]  # (message, level): progress of an operation


def log_emitter(logger: logging.Logger) -> Emit:
    """An Emit for work no operation follows (recovery, supervisor): messages go to the log."""

    def emit(message: str, level: str = "info") -> None:
        logger.log(logging.WARNING if level in ("warning", "error") else logging.INFO, "%s",
                   message)  # fmt: skip

    return emit


@dataclass
class Context:
    settings: Settings
    state: Store
    box: Secrets
    runtime: Runtime
    edge: Router
    clock: Clock
    data: DataStore
    # the engine of each kind of datastore ("postgres", "keyvalue"); none in most unit tests
    engines: Mapping[str, DatastoreEngine] = field(default_factory=dict)
    volumes: Volumes | None = None  # services' persistent disks
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    route_lock: threading.RLock = field(default_factory=threading.RLock)  # one edge apply
    port_lock: threading.Lock = field(default_factory=threading.Lock)  # allocate + record
    disk: DiskGuard = field(init=False)  # space checks and the reserve of settings.home
    # the daemon's loopback port for the platform host (webhooks, deploy hooks, git over
    # HTTP), routed from the public listener; None until the daemon serves it
    platform_port: int | None = None
    platform_internal_port: int | None = None  # its slot's port in the internal region

    def __post_init__(self) -> None:
        self.disk = DiskGuard(self.settings.home, self.settings.min_free_bytes)
