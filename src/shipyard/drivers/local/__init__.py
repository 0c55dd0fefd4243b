"""Drivers for this machine: processes (implementing shipyard.run.runtime.Runtime), log files."""

from shipyard.drivers.local.logfiles import tail
from shipyard.drivers.local.process import LocalProcesses, handles_with_env
from shipyard.run.runtime import ExitStatus, ProcessHandle, ProcessSpec

__all__ = [
    "ExitStatus",
    "LocalProcesses",
    "ProcessHandle",
    "ProcessSpec",
    "handles_with_env",
    "tail",
]
