"""Processes on this machine: the local runtime's only contact with the kernel.

Contract:

* ``start`` launches ``/bin/bash -c <command>`` as the leader of a new session and process
  group, with exactly the given env and cwd, stdin from /dev/null and stdout+stderr appended to
  one log file (O_APPEND|O_CREAT, so the instance keeps logging after the daemon dies). Every
  other file descriptor is closed. Instances OUTLIVE the object (and the daemon) that started
  them.
* A :class:`ProcessHandle` is ``(pid, start_time)``, where ``start_time`` is field 22 of
  ``/proc/<pid>/stat``. A restarted daemon re-adopts an instance from its stored handle; a
  recycled pid has another start time and is never mistaken for ours.
* ``status``/``alive``/``signal_group``/``ports_listening`` never block. ``stop`` and ``run``
  block for at most their grace/timeout (plus a short bounded wait after SIGKILL).
* Exit codes are known only for processes this object started (it reaps them with
  ``waitpid(WNOHANG)``); for adopted processes ``status`` reports only running / not running.

Failures to start raise :class:`~shipyard.errors.RuntimeFailure`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shipyard.clock import Clock, SystemClock
from shipyard.errors import RuntimeFailure
from shipyard.run.runtime import ExitStatus, ProcessHandle, ProcessSpec

BASH = "/bin/bash"
TIMEOUT_EXIT_CODE = 124
_POLL_S = 0.02
_KILL_WAIT_S = 5.0  # how long to wait for the leader to vanish after SIGKILL
_TCP_LISTEN = "0A"


RUNNING = ExitStatus(running=True, exit_code=None, signal=None)
GONE = ExitStatus(running=False, exit_code=None, signal=None)


@dataclass(frozen=True)
class _ProcStat:
    state: str
    pgrp: int
    start_time: int


def _read_stat(pid: int) -> _ProcStat | None:
    """Parse /proc/<pid>/stat; None if the process does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) is in parentheses and may itself contain spaces or ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    # rest[0] is field 3 (state), rest[2] field 5 (pgrp), rest[19] field 22 (starttime).
    try:
        return _ProcStat(state=rest[0], pgrp=int(rest[2]), start_time=int(rest[19]))
    except (IndexError, ValueError):
        return None


def _status_from_returncode(returncode: int) -> ExitStatus:
    if returncode < 0:
        return ExitStatus(running=False, exit_code=None, signal=-returncode)
    return ExitStatus(running=False, exit_code=returncode, signal=None)


class LocalProcesses:
    """Start, watch, signal and stop process groups on this machine. Thread-safe."""

    def __init__(self, clock: Clock = SystemClock()) -> None:  # noqa: B008 - stateless default
        self._clock = clock
        self._lock = threading.Lock()
        self._children: dict[ProcessHandle, subprocess.Popen[bytes]] = {}
        self._exited: dict[ProcessHandle, ExitStatus] = {}

    # -- starting ----------------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Start ``spec.command`` in its own session; return its handle (does not wait)."""
        popen = self._spawn(spec)
        stat = _read_stat(popen.pid)
        if stat is None:  # cannot happen for an unreaped child, but never return a bad handle
            popen.kill()
            popen.wait()
            raise RuntimeFailure(f"started {spec.command!r} but /proc/{popen.pid} is missing")
        handle = ProcessHandle(pid=popen.pid, start_time=stat.start_time)
        with self._lock:
            self._children[handle] = popen
        return handle

    def _spawn(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        if not spec.cwd.is_dir():
            raise RuntimeFailure(
                f"cannot start {spec.command!r}: working directory {spec.cwd} does not exist",
                fields={"cwd": str(spec.cwd)},
            )
        try:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot open log file {spec.log_path}: {exc.strerror}",
                fields={"log_path": str(spec.log_path)},
            ) from exc
        try:
            return subprocess.Popen(
                [BASH, "-c", spec.command],
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot start {spec.command!r} in {spec.cwd}: {exc.strerror or exc}",
                fields={"cwd": str(spec.cwd)},
            ) from exc
        finally:
            os.close(log_fd)

    # -- watching ----------------------------------------------------------------------------

    def status(self, handle: ProcessHandle) -> ExitStatus:
        """Non-blocking. Reaps our own children; adopted ones are judged from /proc."""
        with self._lock:
            known = self._exited.get(handle)
            if known is not None:
                return known
            popen = self._children.get(handle)
            if popen is not None:
                returncode = popen.poll()
                if returncode is None:
                    return RUNNING
                final = _status_from_returncode(returncode)
                del self._children[handle]
                self._exited[handle] = final
                return final
        if handle.pid <= 1:
            return GONE  # never a process of ours (0 would mean "my own group" to killpg)
        stat = _read_stat(handle.pid)
        if stat is None or stat.start_time != handle.start_time or stat.state in ("Z", "X"):
            return GONE
        return RUNNING

    def alive(self, handle: ProcessHandle) -> bool:
        return self.status(handle).running

    def ports_listening(self, handle: ProcessHandle) -> set[int]:
        """TCP ports in LISTEN state held by any process of the instance's group."""
        if self._group_is_foreign(handle):
            return set()
        inodes: set[str] = set()
        for pid in _group_members(handle.pid):
            inodes |= _socket_inodes(pid)
        if not inodes:
            return set()
        return _listening_ports(inodes)

    # -- signalling and stopping ---------------------------------------------------------------

    def signal_group(self, handle: ProcessHandle, sig: int) -> None:
        """killpg(pid, sig); a vanished group is not an error."""
        if self._group_is_foreign(handle):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.pid, sig)

    def stop(self, handle: ProcessHandle, grace_s: float) -> ExitStatus:
        """SIGTERM the group, wait up to ``grace_s`` for the leader, then SIGKILL the group.

        After the leader is gone the group is SIGKILLed once more so no member survives.
        """
        self.signal_group(handle, signal.SIGTERM)
        if not self._wait_gone(handle, grace_s):
            self.signal_group(handle, signal.SIGKILL)
            self._wait_gone(handle, _KILL_WAIT_S)
        self.signal_group(handle, signal.SIGKILL)
        return self.status(handle)

    def _wait_gone(self, handle: ProcessHandle, timeout_s: float) -> bool:
        deadline = self._clock.monotonic() + timeout_s
        while self.alive(handle):
            if self._clock.monotonic() >= deadline:
                return False
            self._clock.sleep(_POLL_S)
        return True

    def _group_is_foreign(self, handle: ProcessHandle) -> bool:
        """True if ``handle.pid`` now names another process (the pid was recycled), or is no
        pid at all: killpg(0) would signal our own group, killpg(1) everything.

        While any member of our group lives, the kernel cannot hand out its pgid as a new pid,
        so a live process with that pid and another start time proves our group is empty.
        """
        if handle.pid <= 1:
            return True
        with self._lock:
            if handle in self._children:
                return False  # unreaped child: the pid is still ours
        stat = _read_stat(handle.pid)
        return stat is not None and stat.start_time != handle.start_time

    # -- blocking commands -------------------------------------------------------------------

    def run(self, spec: ProcessSpec, timeout_s: float) -> int:
        """Run a build/pre-deploy command to completion with the same isolation as ``start``.

        Returns the exit code (128+N if killed by signal N). On timeout the group is killed,
        "shipyard: command timed out after N s" is appended to the log and 124 is returned.
        Processes the command left behind in its group are killed when it finishes.
        """
        popen = self._spawn(spec)
        deadline = self._clock.monotonic() + timeout_s
        delay = 0.005
        while (returncode := popen.poll()) is None:
            if self._clock.monotonic() >= deadline:
                self._kill_run(popen)
                _append_line(spec.log_path, f"shipyard: command timed out after {timeout_s:g} s")
                return TIMEOUT_EXIT_CODE
            self._clock.sleep(delay)
            delay = min(delay * 2, 0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)  # leftovers; the pgid is not reusable yet
        return 128 - returncode if returncode < 0 else returncode

    @staticmethod
    def _kill_run(popen: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _group_members(pgid: int) -> list[int]:
    members = []
    for pid in _all_pids():
        stat = _read_stat(pid)
        if stat is not None and stat.pgrp == pgid and stat.state not in ("Z", "X"):
            members.append(pid)
    return members


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _listening_ports(inodes: set[str]) -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _TCP_LISTEN and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def handles_with_env(key: str, value: str) -> list[ProcessHandle]:
    """Processes whose environment holds ``key=value``: finds what was started but never
    recorded (the daemon died between spawning a process and writing its pid)."""
    needle = f"{key}={value}".encode()
    found = []
    for pid in _all_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            stat = _read_stat(pid)
            if stat is not None:
                found.append(ProcessHandle(pid=pid, start_time=stat.start_time))
    return found


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a (possibly huge) log file; [] if it does not exist."""
    if lines <= 0:
        return []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        pos, data, block = end, b"", 8192
        # Need lines+1 newlines (the last one usually terminates the final line).
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            block = min(block * 2, 1 << 20)
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    if pos == 0 and not text:
        return []
    return [line.removesuffix("\r") for line in text.split("\n")[-lines:]]
