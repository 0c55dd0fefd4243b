"""Starting and finding the daemon from the CLI: `up -d` starts it detached (its output through
a log writer, like every process Shipyard starts) and accepts only its own daemon's answer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from shipyard.apimodels import Health
from shipyard.client import Client
from shipyard.clock import SystemClock, poll_until
from shipyard.drivers.local.logfiles import tail as log_tail
from shipyard.drivers.local.logwriters import LogWriters
from shipyard.errors import Conflict, DaemonUnavailable, ShipyardError
from shipyard.settings import Settings


def start_detached(cfg: Settings) -> int:
    """Start the daemon of ``cfg.home`` in the background and wait until it answers; its pid.
    Refuses (Conflict) when any daemon, another Shipyard's too, answers on the API port."""
    running = health(cfg)
    if running is not None:
        raise other_shipyard(cfg, running)
    from shipyard.controlplane.daemon import secure_home

    secure_home(cfg.home)
    proc, writer = _spawn_daemon(cfg)

    def answered() -> bool:
        """Our daemon answers: the one with our pid. Another daemon answering meanwhile (it
        took the API port) is not ours; ours then exits, naming the port."""
        code = proc.poll()
        if code is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                writer.wait(timeout=5)  # its last lines, stored
            tail = log_tail(cfg.daemon_log_path, 15)
            error = Conflict if code == Conflict.exit_code else ShipyardError
            raise error(
                "The daemon exited during start-up:\n" + "\n".join(f"    | {line}" for line in tail)
            )
        answer = health(cfg)
        return answer is not None and answer.pid == proc.pid

    if not poll_until(SystemClock(), answered, timeout_s=60, interval_s=0.2):
        raise ShipyardError(f"The daemon did not answer within 60 s; see {cfg.daemon_log_path}.")
    return proc.pid


def _spawn_daemon(cfg: Settings) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """The daemon, in a session of its own, its output through a log writer like every
    process Shipyard starts (so its log is bounded too): (daemon, writer)."""
    writer, pipe = LogWriters().start(cfg.daemon_log_path)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard.cli.main", "up"],
            stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    finally:
        os.close(pipe)
    return proc, writer


def health(cfg: Settings) -> Health | None:
    """What the daemon on this API port says of itself; None if nothing answers."""
    with Client(cfg, timeout=2) as c:
        try:
            return c.health()
        except DaemonUnavailable:
            return None


def same_home(answer: Health, cfg: Settings) -> bool:
    """The daemon that answered is this home's (however either path is spelled)."""
    return answer.home is not None and Path(answer.home).resolve() == cfg.home.resolve()


def other_shipyard(cfg: Settings, other: Health) -> Conflict:
    return Conflict(
        f"Port {cfg.api_port} (SHIPYARD_API_PORT) is in use by another Shipyard "
        f"(home {other.home or 'unknown'}, pid {other.pid or 'unknown'}). Stop it, or give "
        "this one another port with SHIPYARD_API_PORT=<port>.",
        fields={"port": cfg.api_port, "home": other.home, "pid": other.pid},
    )
