"""Drivers for this machine: processes, log files."""

from shipyard.drivers.local.process import (
    ExitStatus,
    LocalProcesses,
    ProcessHandle,
    ProcessSpec,
    tail,
)

__all__ = ["ExitStatus", "LocalProcesses", "ProcessHandle", "ProcessSpec", "tail"]
