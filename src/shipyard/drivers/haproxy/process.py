"""The HAProxy process: started, found again, waited for, stopped.

HAProxy outlives the daemon: it is started daemonized (``-W -D``) with everything under
``opts.dir``, and a new daemon adopts it (pidfile + /proc + master CLI) instead of starting
another.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from shipyard.clock import Clock, poll_until
from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.config import EdgeOptions
from shipyard.drivers.haproxy.files import read_text
from shipyard.errors import EdgeError


def start_master(haproxy_bin: str, opts: EdgeOptions) -> None:
    """Run ``haproxy -W -D`` on ``opts.config_path`` (it returns once the master is forked);
    EdgeError with the log's tail if it fails."""
    argv = [
        haproxy_bin, "-W", "-D",
        "-S", f"{opts.master_socket},mode,600",
        "-p", str(opts.pidfile),
        "-f", str(opts.config_path),
    ]  # fmt: skip
    with opts.log_file.open("ab") as log:
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, timeout=30, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EdgeError(f"could not start HAProxy ({haproxy_bin}): {exc}") from exc
    if proc.returncode != 0:
        raise EdgeError(f"HAProxy failed to start: {log_tail(opts.log_file)}")


def wait_ready(
    opts: EdgeOptions, clock: Clock, timeout: float, old_worker: int | None, failed_before: int = 0
) -> int:
    """Wait until the master lists a new current worker and it answers on admin.sock;
    returns its pid."""
    last = "no answer yet"

    def ready() -> int | None:
        nonlocal last
        try:
            proc = runtime.show_proc(opts.master_socket, timeout=2.0)
        except EdgeError as exc:
            last = exc.message
            return None
        if proc.reloads_failed > failed_before:
            raise EdgeError(
                "HAProxy could not load the new config (a listener port may be in use);"
                " the previous config keeps serving"
            )
        last = f"workers {proc.workers}"
        new = [p for p in proc.workers if p != old_worker]
        if not new:
            return None
        try:
            pid = runtime.worker_pid(opts.admin_socket, timeout=2.0)
        except EdgeError as exc:
            last = exc.message
            return None
        return pid if pid in new else None

    pid = poll_until(clock, ready, timeout_s=timeout, interval_s=0.05)
    if pid is None:
        raise EdgeError(f"HAProxy worker not ready after {timeout}s ({last})")
    return pid


def terminate(master: int, master_socket: Path, clock: Clock, timeout: float) -> None:
    """Soft-stop the master and its workers (SIGUSR1: finish in-flight requests, for up to
    ``timeout``), then SIGTERM, then SIGKILL."""
    pids = [master, *worker_pids(master_socket)]
    for sig, wait in (
        (signal.SIGUSR1, timeout),
        (signal.SIGTERM, 2.0),
        (signal.SIGKILL, 2.0),
    ):
        signal_all(pids, sig)
        if wait_gone(pids, clock, wait):
            break


def worker_pids(master_socket: Path) -> list[int]:
    try:
        info = runtime.show_proc(master_socket)
    except EdgeError:
        return []
    return [*info.workers, *info.old_workers]


def wait_gone(pids: list[int], clock: Clock, timeout: float) -> bool:
    gone = poll_until(
        clock, lambda: not any(alive(p) for p in pids), timeout_s=timeout, interval_s=0.05
    )
    return bool(gone)


def cleanup_files(opts: EdgeOptions) -> None:
    """Remove the sockets and the pidfile a stopped (or never started) HAProxy leaves."""
    for path in (opts.admin_socket, opts.master_socket, opts.pidfile):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def log_tail(log_file: Path, limit: int = 2000) -> str:
    return (read_text(log_file) or "")[-limit:].strip()


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (HAProxy's master is reparented to init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def master_pid_from(pidfile: Path, config: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is HAProxy running ``config``."""
    text = (read_text(pidfile) or "").strip()
    if not text.isdigit() or not alive(int(text)):
        return None
    try:
        argv = Path(f"/proc/{text}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    names = [os.fsdecode(a) for a in argv]
    if not names or "haproxy" not in Path(names[0]).name or str(config) not in names:
        return None
    return int(text)


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
