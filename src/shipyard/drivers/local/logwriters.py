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

MASK_MIN_LEN = 4  # shorter values are not masked: "1" would be masked in every number
WRITER_WAIT_S = 5.0  # how long to wait for a writer to store a finished command's last lines


class LogWriters:
    """Starts log writers and reaps the ones that finished (they exit at their pipe's end; the
    rest outlive this object, like the processes they serve). Thread-safe."""

    def __init__(self, logd: str | None = None) -> None:
        self._logd = logd or find_logd()
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self, log_dir: Path, mask: tuple[str, ...] = ()
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start the log writer of ``log_dir``; return it and the write end of its pipe (the
        caller hands it to the process and closes it). ``mask``: values it writes as
        ******** (see :func:`mask_values`), sent through a pipe of their own that it reads
        at start: never on its command line or in its environment, which `ps` shows."""
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
        values = mask_values(mask)
        mask_read, mask_write = os.pipe() if values else (-1, -1)
        command = logd_command(self._logd, log_dir)
        if values:  # -m FD before the directory: the values come through that pipe
            command[-1:-1] = ["-m", str(mask_read)]
        read_end, write_end = os.pipe()
        try:
            writer = subprocess.Popen(
                command,
                env={},
                stdin=read_end,
                pass_fds=(mask_read,) if values else (),
                stdout=subprocess.DEVNULL,
                # Not the daemon's stderr: the writer outlives it, and would hold whatever the
                # daemon's stderr is (a terminal, a pipe) open. It only complains at start.
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # outlives the daemon, untouched by its signals
            )
        except OSError as exc:
            os.close(write_end)
            if values:
                os.close(mask_write)
            raise RuntimeFailure(
                f"cannot start the log writer {self._logd}: {exc.strerror or exc}",
                fields={"log_path": str(log_dir)},
            ) from exc
        finally:
            os.close(read_end)
            if values:
                os.close(mask_read)
        if values:
            _send_mask(mask_write, values)
        with self._lock:
            self._running.append(writer)
        return writer, write_end

    def reap(self) -> None:
        """Collect the exit status of writers that finished (no zombies left behind)."""
        with self._lock:
            self._running = [w for w in self._running if w.poll() is None]


def mask_values(values: tuple[str, ...]) -> tuple[bytes, ...]:
    """What the log writer masks: each value's lines (it works line by line) of at least
    MASK_MIN_LEN bytes (so "1" or "true" are not masked everywhere), distinct, longest first
    (a value that contains another is masked whole)."""
    parts = {
        part.encode(errors="surrogateescape")
        for value in values
        for part in value.replace("\r", "\n").split("\n")
    }
    kept = [p for p in parts if len(p) >= MASK_MIN_LEN and b"\0" not in p]
    return tuple(sorted(kept, key=lambda p: (-len(p), p)))


def _send_mask(fd: int, values: tuple[bytes, ...]) -> None:
    """The values, each ended by a NUL byte, then EOF. The writer reads them before anything
    else; if it died meanwhile there is nobody to mask for."""
    try:
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(b"".join(v + b"\0" for v in values))
    except OSError:
        pass


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
