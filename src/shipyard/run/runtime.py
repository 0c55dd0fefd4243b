"""The Runtime protocol: how stages start, watch and stop processes (drivers/local implements it).

Contract: every method returns quickly except ``stop`` (blocks up to ``grace_s``) and ``run``
(blocks until the command exits or times out). Processes started by ``start`` outlive the caller
and are identified by (pid, start_time), so a recycled pid is never mistaken for an instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ExitStatus", "ProcessHandle", "ProcessSpec", "Runtime"]


@dataclass(frozen=True)
class ProcessSpec:
    command: str
    cwd: Path
    env: Mapping[str, str]
    log_path: Path


@dataclass(frozen=True)
class ProcessHandle:
    """Identifies one instance across daemon restarts. JSON-able: two ints."""

    pid: int
    start_time: int  # /proc/<pid>/stat field 22: clock ticks since boot


@dataclass(frozen=True)
class ExitStatus:
    running: bool
    exit_code: int | None  # None while running, or when unknown (adopted processes)
    signal: int | None  # the signal that killed the leader, if any and if known


class Runtime(Protocol):
    def start(self, spec: ProcessSpec) -> ProcessHandle: ...

    def status(self, handle: ProcessHandle) -> ExitStatus: ...

    def alive(self, handle: ProcessHandle) -> bool: ...

    def stop(self, handle: ProcessHandle, grace_s: float) -> ExitStatus: ...

    def run(self, spec: ProcessSpec, timeout_s: float) -> int: ...

    def ports_listening(self, handle: ProcessHandle) -> set[int]: ...
