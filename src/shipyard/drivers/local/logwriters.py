"""The log writers the local runtime starts: one ``shipyard-logd`` per process, fed by a pipe
only it and that process hold (see logfiles.py for what it keeps on disk)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from pathlib import Path

from shipyard.drivers.local.logfiles import MISSING_LOGD, find_logd, logd_command
from shipyard.errors import RuntimeFailure

WRITER_WAIT_S = 5.0  # how long to wait for a writer to store a finished command's last lines


class LogWriters:
    """Starts log writers and reaps the ones that finished (they exit at their pipe's end; the
    rest outlive this object, like the processes they serve). Thread-safe."""

    def __init__(self, logd: str | None = None) -> None:
        self._logd = logd or find_logd()
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
        """Start the log writer of ``log_dir``; return it and the write end of its pipe (the
        caller hands it to the process and closes it)."""
        if self._logd is None:
            raise RuntimeFailure(MISSING_LOGD)
        self.reap()
        try:
            log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot create log directory {log_dir}: {exc.strerror}",
                fields={"log_path": str(log_dir)},
            ) from exc
        read_end, write_end = os.pipe()
        try:
            writer = subprocess.Popen(
                logd_command(self._logd, log_dir),
                env={},
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                # Not the daemon's stderr: the writer outlives it, and would hold whatever the
                # daemon's stderr is (a terminal, a pipe) open. It only complains at start.
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # outlives the daemon, untouched by its signals
            )
        except OSError as exc:
            os.close(write_end)
            raise RuntimeFailure(
                f"cannot start the log writer {self._logd}: {exc.strerror or exc}",
                fields={"log_path": str(log_dir)},
            ) from exc
        finally:
            os.close(read_end)
        with self._lock:
            self._running.append(writer)
        return writer, write_end

    def reap(self) -> None:
        """Collect the exit status of writers that finished (no zombies left behind)."""
        with self._lock:
            self._running = [w for w in self._running if w.poll() is None]


def wait_writer(writer: subprocess.Popen[bytes]) -> None:
    """Let a log writer store a finished command's last lines (it exits at the pipe's end), so
    what is appended or read next comes after them. Bounded: a process that left the command's
    group may still hold the pipe."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        writer.wait(timeout=WRITER_WAIT_S)


def append_line(log_dir: Path, line: str) -> None:
    """A line of Shipyard's own at the end of a log directory (no writer of it is running)."""
    fd = os.open(log_dir / "current", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
