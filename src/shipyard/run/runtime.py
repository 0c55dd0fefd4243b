"""The Runtime protocol: how stages start, watch and stop processes (drivers/local implements it).

Contract: every method returns quickly except ``stop`` (blocks up to ``grace_s``) and ``run``
(blocks until the command exits or times out). Processes started by ``start`` outlive the caller
and are identified by (pid, start_time), so a recycled pid is never mistaken for an instance.
"""

from __future__ import annotations

from typing import Protocol

from shipyard.drivers.local.process import ExitStatus, ProcessHandle, ProcessSpec

__all__ = ["ExitStatus", "ProcessHandle", "ProcessSpec", "Runtime"]


class Runtime(Protocol):
    def start(self, spec: ProcessSpec) -> ProcessHandle: ...

    def status(self, handle: ProcessHandle) -> ExitStatus: ...

    def alive(self, handle: ProcessHandle) -> bool: ...

    def stop(self, handle: ProcessHandle, grace_s: float) -> ExitStatus: ...

    def run(self, spec: ProcessSpec, timeout_s: float) -> int: ...

    def ports_listening(self, handle: ProcessHandle) -> set[int]: ...
