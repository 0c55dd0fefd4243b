"""The Runtime protocol: how stages start, watch and stop processes (drivers/local implements it).

Contract shared by every method:

* Processes started by ``start`` outlive the caller (and the daemon) and are identified by a
  :class:`ProcessHandle` ``(pid, start_time)``, so a recycled pid is never mistaken for an
  instance: a handle whose pid now names another process is simply gone. Handles are plain
  data, stored in the state database and valid across daemon restarts.
* Only ``stop`` (up to ``grace_s`` plus a short bounded wait after SIGKILL) and ``run`` (until
  the command exits, or ``timeout_s``) block; every other method returns quickly.
* Failures the driver can name raise :class:`~shipyard.errors.RuntimeFailure`; a process that
  vanished, exited or was never there is not a failure (it is reported as not running, or
  there is nothing to do). Methods that only look are idempotent.
"""

from __future__ import annotations

import signal
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
    log_path: Path  # the process's log: a directory its log writer keeps bounded
    user: str | None = None  # the system account it runs as (None: Shipyard's own)
    # (source, target) directories: ``source`` appears at ``target`` for this process only
    # (a private mount namespace), e.g. a persistent disk at its mountPath
    binds: tuple[tuple[Path, Path], ...] = ()
    # values the log writer replaces by ******** wherever a line holds them (secrets in build
    # and pre-deploy output); handed to it through a pipe, never its argv or environment
    mask: tuple[str, ...] = ()


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
    def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Start ``spec.command`` in a new session and process group, with exactly
        ``spec.env`` and ``spec.cwd``, stdout+stderr into the log ``spec.log_path``, bounded in
        size and never blocking the process (lines a full disk refuses are dropped); return at
        once with its handle (does not wait for readiness). Not idempotent: every call starts
        a new process. Raises RuntimeFailure when the working directory is missing, the log
        cannot be opened or the command cannot be executed; then nothing is left running."""
        ...

    def status(self, handle: ProcessHandle) -> ExitStatus:
        """Running or not, without blocking; exit code / signal only when this runtime object
        started (and reaped) the process, else None. Zombies, vanished and recycled pids are
        not running. Never raises for any handle (including pid 0 or 1: never ours)."""
        ...

    def alive(self, handle: ProcessHandle) -> bool:
        """``status(handle).running``."""
        ...

    def stop(
        self, handle: ProcessHandle, grace_s: float, sig: int = signal.SIGTERM,
        whole_group: bool = True,
    ) -> ExitStatus:  # fmt: skip
        """``sig`` (SIGTERM) to the handle's process group, or with ``whole_group=False`` to
        its leader only (a server that stops its own children, as PostgreSQL must: SIGINT is
        its fast shutdown, and its children take SIGINT to mean other things); wait up to
        ``grace_s`` for the leader, SIGKILL what is left of the group; return the final
        status. Blocks up to ``grace_s`` plus a bounded wait after SIGKILL. Idempotent:
        stopping a gone (or recycled) handle signals nothing and returns its status. Raises
        RuntimeFailure only if the group may not be signalled."""
        ...

    def run(self, spec: ProcessSpec, timeout_s: float) -> int:
        """Run a command to completion with the isolation of ``start`` (builds, pre-deploy
        commands); blocks until it exits or ``timeout_s`` passes. Returns its exit code
        (128+N if killed by signal N; 124 on timeout, after killing its group and noting the
        timeout in the log). Whatever it left running in its group is killed. Raises
        RuntimeFailure when it cannot be started (as ``start``); a failing command is not an
        error, its exit code says so."""
        ...

    def ports_listening(self, handle: ProcessHandle) -> set[int]:
        """TCP ports in LISTEN state held by any live process of the handle's group (the app
        may listen from a child of the leader). Empty for a gone or recycled handle. Never
        blocks, never raises."""
        ...

    def find(self, marker_key: str, marker_value: str) -> list[ProcessHandle]:
        """Live processes whose environment holds ``marker_key=marker_value``: what a daemon
        that died between spawning a process and recording its pid left behind (instances
        carry e.g. RENDER_INSTANCE_ID). Zombies, processes we may not inspect and those that
        exit during the scan are left out. A scan of all processes, never blocks on them;
        idempotent; never raises."""
        ...

    def tail(self, log_path: Path, lines: int) -> list[str]:
        """The last ``lines`` lines of a log written by ``start``/``run`` (without line
        terminators; [] for ``lines <= 0``, a missing or an empty file). Reads only the end of
        the file, however large. Raises RuntimeFailure if the file exists but cannot be
        read."""
        ...

    def note(self, log_path: Path, line: str) -> None:
        """Append a line of Shipyard's own (a build header, an outcome) to a log written by
        ``run``, between commands (no writer of that log is running). Raises RuntimeFailure
        when the log cannot be written."""
        ...
