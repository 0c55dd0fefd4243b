"""A redis-server started directly, for tests and benchmarks (the control plane starts servers
through its Runtime with ``config.server_command``).

:class:`LocalServer` runs ``redis-server CONFIG`` as an account (``popen_kwargs``: the
``redis`` account when we are root) in its own session, output appended to a log file, and
stops it by its pid only: SIGTERM (Redis saves and exits), SIGKILL after the grace period. As a
context manager it stops the server however the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from shipyard.drivers.local.users import popen_kwargs
from shipyard.errors import RuntimeFailure


class LocalServer:
    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *,
        user: str | None = None,
        binary: str = "redis-server",
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.user = user
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> LocalServer:
        if self.alive():
            raise RuntimeFailure(f"redis-server for {self.config_path} runs already")
        with open(self.log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    [self.binary, str(self.config_path)],
                    cwd=self.config_path.parent, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, **popen_kwargs(self.user),
                )  # fmt: skip
            except OSError as exc:
                raise RuntimeFailure(
                    f"could not start {self.binary} {self.config_path}: {exc.strerror or exc}"
                ) from None
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        return proc.returncode

    def log(self) -> str:
        """The server's output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> LocalServer:
        return self.start() if not self.alive() else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
