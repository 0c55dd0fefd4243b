"""Processes on this machine: the local runtime's only contact with the kernel.

Implements :class:`shipyard.run.runtime.Runtime` (the per-method contracts are there). Here:

* ``start`` launches ``/bin/bash -c <command>`` as the leader of a new session and process
  group, with exactly the given env and cwd, stdin from /dev/null and stdout+stderr into a
  pipe read by its own ``shipyard-logd`` (in a session of its own), which keeps the log
  directory ``spec.log_path`` bounded and drops (and counts) lines a full disk refuses, so an
  app never dies or stalls on its logging (see drivers/local/logfiles.py). Every other file
  descriptor is closed. Instances and their log writers OUTLIVE the object (and the daemon)
  that started them; a writer exits when its instance's output closes.
* A :class:`ProcessHandle` is ``(pid, start_time)``, where ``start_time`` is field 22 of
  ``/proc/<pid>/stat``. A restarted daemon re-adopts an instance from its stored handle; a
  recycled pid has another start time and is never mistaken for ours. Zombies count as gone.
* ``status``/``alive``/``signal_group``/``ports_listening``/``find``/``tail`` never block.
  ``stop`` and ``run`` block for at most their grace/timeout (plus a short bounded wait after
  SIGKILL).
* Exit codes are known only for processes this object started (it reaps them with
  ``waitpid(WNOHANG)``); for adopted processes ``status`` reports only running / not running.
* Process inspection (state, environment, group members, sockets) goes through psutil; the
  only hand-read /proc field is the start time (see :func:`_start_ticks`).

Failures raise :class:`~shipyard.errors.RuntimeFailure`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from pathlib import Path

import psutil

from shipyard.clock import Clock, SystemClock, poll_until, poll_while
from shipyard.drivers.local.logfiles import tail
from shipyard.drivers.local.logwriters import LogWriters, append_line, wait_writer
from shipyard.drivers.local.users import popen_kwargs
from shipyard.errors import RuntimeFailure
from shipyard.run.runtime import ExitStatus, ProcessHandle, ProcessSpec

BASH = "/bin/bash"
UNSHARE = "/usr/bin/unshare"
TIMEOUT_EXIT_CODE = 124
_POLL_S = 0.02  # stop(): how often to look whether the leader is gone
_RUN_POLL_S, _RUN_POLL_MAX_S = 0.005, 0.1  # run(): first poll, doubling up to the cap
_KILL_WAIT_S = 5.0  # how long to wait for the leader to vanish after SIGKILL
_DEAD = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


RUNNING = ExitStatus(running=True, exit_code=None, signal=None)
GONE = ExitStatus(running=False, exit_code=None, signal=None)


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (starttime, clock ticks since boot); None if no such pid."""
    stat = _stat(pid)
    return stat[1] if stat is not None else None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) from /proc/<pid>/stat in ONE read; None if no such pid.

    The one file still parsed by hand. ProcessHandle.start_time stores exactly this integer
    (state databases hold it), and psutil only offers it as ``create_time()``, a float of epoch
    seconds (ticks / CLK_TCK + boot time). Turning that back into ticks would depend on the
    boot time, which psutil re-reads from /proc/stat and which moves when the wall clock is
    stepped (and jitters by a second on some hosts): a live instance would look recycled.
    """
    try:  # os.read, not pathlib: a third of the cost, and this runs per instance per second
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:  # gone, or never existed
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # comm (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:  # fields[0] is field 3 (state), so field 22 is fields[19]
        return fields[0].decode(), int(fields[19])
    except (IndexError, ValueError):
        return None


def _process(pid: int) -> psutil.Process | None:
    """The live (not zombie) process ``pid``, or None."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    try:
        if proc.status() in _DEAD:
            return None
    except psutil.NoSuchProcess:  # exited meanwhile (ZombieProcess is a NoSuchProcess too)
        return None
    except psutil.AccessDenied:
        pass  # it exists, and /proc/<pid>/status is not readable to us: take it as live
    return proc


def _handle_alive(handle: ProcessHandle) -> bool:
    """``handle`` names a live process: the pid exists, is no zombie and has the same start
    time. State and start time come from one read of /proc/<pid>/stat, so both belong to the
    same process; it is the supervisor's per-instance check every second, so it stays one
    file read (psutil would read the same file three times)."""
    stat = _stat(handle.pid)
    return stat is not None and stat[0] not in ("Z", "X", "x") and stat[1] == handle.start_time


def _status_from_returncode(returncode: int) -> ExitStatus:
    if returncode < 0:
        return ExitStatus(running=False, exit_code=None, signal=-returncode)
    return ExitStatus(running=False, exit_code=returncode, signal=None)


class LocalProcesses:
    """Start, watch, signal and stop process groups on this machine. Thread-safe."""

    def __init__(
        self,
        clock: Clock = SystemClock(),  # noqa: B008 - stateless default
        logd: str | None = None,
    ) -> None:
        """``logd``: the log writer binary (default: :func:`find_logd`)."""
        self._clock = clock
        self._writers = LogWriters(logd)
        self._reaped_at = 0.0
        self._lock = threading.Lock()
        self._children: dict[ProcessHandle, subprocess.Popen[bytes]] = {}
        self._exited: dict[ProcessHandle, ExitStatus] = {}

    # -- starting ----------------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Start ``spec.command`` in its own session; return its handle (does not wait)."""
        popen, _writer = self._spawn(spec)
        ticks = _start_ticks(popen.pid)
        if ticks is None:  # cannot happen for an unreaped child, but never return a bad handle
            popen.kill()
            popen.wait()
            raise RuntimeFailure(f"started {spec.command!r} but /proc/{popen.pid} is missing")
        handle = ProcessHandle(pid=popen.pid, start_time=ticks)
        with self._lock:
            self._children[handle] = popen
        return handle

    def _spawn(self, spec: ProcessSpec) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """The command and its log writer, joined by a pipe only they hold."""
        if not spec.cwd.is_dir():
            raise RuntimeFailure(
                f"cannot start {spec.command!r}: working directory {spec.cwd} does not exist",
                fields={"cwd": str(spec.cwd)},
            )
        argv = _with_binds(spec)
        writer, pipe = self._writers.start(spec.log_path, spec.mask)
        try:
            popen = subprocess.Popen(
                argv,
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=pipe,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
                **popen_kwargs(spec.user),
            )
        except (OSError, ValueError) as exc:  # ValueError: what execve cannot carry (NUL)
            writer.kill()
            writer.wait()
            raise RuntimeFailure(
                f"cannot start {spec.command!r} in {spec.cwd}: "
                f"{getattr(exc, 'strerror', None) or exc}",
                fields={"cwd": str(spec.cwd)},
            ) from exc
        finally:
            os.close(pipe)
        return popen, writer

    # -- watching ----------------------------------------------------------------------------

    def status(self, handle: ProcessHandle) -> ExitStatus:
        """Non-blocking. Reaps our own children (log writers too, at most once a second);
        adopted ones are judged from /proc."""
        now = self._clock.monotonic()
        if now - self._reaped_at >= 1.0:
            self._reaped_at = now
            self._writers.reap()
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
        return RUNNING if _handle_alive(handle) else GONE

    def alive(self, handle: ProcessHandle) -> bool:
        return self.status(handle).running

    def ports_listening(self, handle: ProcessHandle) -> set[int]:
        """TCP ports (v4 and v6) in LISTEN state held by any live process of the instance's
        group; members whose sockets we may not read are skipped."""
        if self._group_is_foreign(handle):
            return set()
        ports: set[int] = set()
        for proc in _group_members(handle.pid):
            try:
                conns = proc.net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}
        return ports

    def find(self, marker_key: str, marker_value: str) -> list[ProcessHandle]:
        """Live processes whose environment holds ``marker_key=marker_value`` (see
        :func:`handles_with_env`)."""
        return handles_with_env(marker_key, marker_value)

    def tail(self, log_path: Path, lines: int) -> list[str]:
        """The last ``lines`` lines of ``log_path`` ([] if it does not exist); RuntimeFailure
        if it exists but cannot be read."""
        try:
            return tail(log_path, lines)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot read log file {log_path}: {exc.strerror or exc}",
                fields={"log_path": str(log_path)},
            ) from exc

    def note(self, log_path: Path, line: str) -> None:
        try:
            log_path.mkdir(parents=True, exist_ok=True, mode=0o700)
            append_line(log_path, line)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot write log {log_path}: {exc.strerror or exc}",
                fields={"log_path": str(log_path)},
            ) from exc

    # -- signalling and stopping ---------------------------------------------------------------

    def signal_group(self, handle: ProcessHandle, sig: int) -> None:
        """killpg(pid, sig); a vanished or recycled group is not an error (nothing is sent).
        RuntimeFailure if no member of the group may be signalled by us (EPERM)."""
        if self._group_is_foreign(handle):
            return
        try:
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise RuntimeFailure(
                f"not permitted to signal process group {handle.pid}",
                fields={"pid": handle.pid},
            ) from exc

    def signal_leader(self, handle: ProcessHandle, sig: int) -> None:
        """kill(pid, sig) to the handle's own process; a gone or recycled one is left alone."""
        if self._group_is_foreign(handle) or not self.alive(handle):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, sig)

    def stop(
        self, handle: ProcessHandle, grace_s: float, sig: int = signal.SIGTERM,
        whole_group: bool = True,
    ) -> ExitStatus:  # fmt: skip
        """``sig`` to the group (or its leader only), wait up to ``grace_s`` for the leader,
        then SIGKILL the group.

        After the leader is gone the group is SIGKILLed once more so no member survives, and
        stop waits (bounded) until no live member is left: on return the group's ports and
        files are released (a restart can bind the same port at once).
        """
        if whole_group:
            self.signal_group(handle, sig)
        else:
            self.signal_leader(handle, sig)
        if not self._wait_gone(handle, grace_s):
            self.signal_group(handle, signal.SIGKILL)
            self._wait_gone(handle, _KILL_WAIT_S)
        self.signal_group(handle, signal.SIGKILL)
        self._wait_group_gone(handle, _KILL_WAIT_S)
        return self.status(handle)

    def _wait_gone(self, handle: ProcessHandle, timeout_s: float) -> bool:
        gone = poll_until(
            self._clock,
            lambda: not self.alive(handle),
            timeout_s=timeout_s,
            interval_s=_POLL_S,
        )
        return gone is not None

    def _wait_group_gone(self, handle: ProcessHandle, timeout_s: float) -> None:
        """SIGKILL is asynchronous: a member may still be exiting (holding its sockets) when
        killpg returns. Zombies do not count; they hold nothing but their pid."""
        if self._group_is_foreign(handle):
            return  # the group is empty already (or the handle names none)
        poll_until(
            self._clock,
            lambda: not _group_members(handle.pid),
            timeout_s=timeout_s,
            interval_s=_POLL_S,
        )

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
        ticks = _start_ticks(handle.pid)
        return ticks is not None and ticks != handle.start_time

    # -- blocking commands -------------------------------------------------------------------

    def run(self, spec: ProcessSpec, timeout_s: float) -> int:
        """Run a build/pre-deploy command to completion with the same isolation as ``start``.

        Returns the exit code (128+N if killed by signal N). On timeout the group is killed,
        "shipyard: command timed out after N s" is appended to the log and 124 is returned.
        Processes the command left behind in its group are killed when it finishes.
        """
        popen, writer = self._spawn(spec)
        returncode = poll_while(
            self._clock,
            popen.poll,
            lambda rc: rc is None,
            timeout_s=timeout_s,
            interval_s=_RUN_POLL_S,
            backoff=2.0,
            max_interval_s=_RUN_POLL_MAX_S,
        )
        if returncode is None:
            self._kill_run(popen)
            wait_writer(writer)
            append_line(spec.log_path, f"shipyard: command timed out after {timeout_s:g} s")
            return TIMEOUT_EXIT_CODE
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)  # leftovers; the pgid is not reusable yet
        wait_writer(writer)
        return 128 - returncode if returncode < 0 else returncode

    @staticmethod
    def _kill_run(popen: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)


def _with_binds(spec: ProcessSpec) -> list[str]:
    """The argv that runs ``spec.command``; with binds, inside a private mount namespace where
    each source is bind-mounted on its target (created, empty, on the host if missing). The
    leader stays the same process (unshare and the wrapper shell exec), so its handle holds.

    Without root there are no mount namespaces: a target that does not exist becomes a
    symlink to its source; one that exists (and is not that link) cannot be replaced."""
    if not spec.binds:
        return [BASH, "-c", spec.command]
    if os.geteuid() != 0:
        for source, target in spec.binds:
            if target.is_symlink() and target.readlink() == source:
                continue
            if target.exists() or target.is_symlink():
                raise RuntimeFailure(
                    f"cannot show {source} at {target}: {target} exists, and without root "
                    "Shipyard cannot mount over it; remove it or run Shipyard as root",
                    fields={"target": str(target)},
                )
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source, target_is_directory=True)
            except OSError as exc:
                raise RuntimeFailure(
                    f"cannot link {target} to {source}: {exc.strerror or exc}",
                    fields={"target": str(target)},
                ) from exc
        return [BASH, "-c", spec.command]
    mounts = " && ".join(
        f"mkdir -p -- {shlex.quote(str(t))} && mount --bind -- {shlex.quote(str(s))} "
        f"{shlex.quote(str(t))}"
        for s, t in spec.binds
    )
    script = f"{mounts} && exec {BASH} -c {shlex.quote(spec.command)}"
    return [UNSHARE, "--mount", "--propagation", "private", BASH, "-c", script]


def _group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid``."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:  # exited meanwhile
            continue
        proc = _process(pid)
        if proc is not None:
            members.append(proc)
    return members


def handles_with_env(key: str, value: str) -> list[ProcessHandle]:
    """Live processes whose environment holds ``key=value``, by pid: finds what was started
    but never recorded (the daemon died between spawning a process and writing its pid).

    Processes whose environment we may not read (other users'), zombies and processes that
    exit during the scan are skipped. Never raises for a process that vanishes.
    """
    found = []
    for pid in psutil.pids():
        try:
            proc = psutil.Process(pid)
            if proc.environ().get(key) != value:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # NoSuchProcess covers zombies
            continue
        ticks = _start_ticks(pid)
        # is_running() re-checks psutil's own identity (pid + start time) AFTER the ticks were
        # read: the environment and the ticks then belong to one process, not a recycled pid.
        if ticks is not None and proc.is_running():
            found.append(ProcessHandle(pid=pid, start_time=ticks))
    return found
