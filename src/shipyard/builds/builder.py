"""Build: run a service's buildCommand in its release workdir, logging to build.log.

The workdir is a fresh copy of the repository; the command runs in ``rootDir`` with the
service's resolved env plus the platform variables, under /bin/bash like Render's builds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.run.runtime import ProcessSpec, Runtime

TIMEOUT_EXIT_CODE = 124  # what Runtime.run returns for a command it killed at its timeout


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    exit_code: int
    log_tail: tuple[str, ...]
    timed_out: bool = False  # killed (with its whole process group) at the timeout


def run_logged(
    runtime: Runtime,
    *,
    label: str,
    command: str,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float,
    mask: tuple[str, ...] = (),
) -> CommandResult:
    """Run one command to completion, adding a header, its output and its outcome to the log
    ``log_path``; the values in ``mask`` (secrets) appear in it as ********."""
    runtime.note(log_path, f"==> {label}: {command}")
    started = time.monotonic()
    spec = ProcessSpec(command=command, cwd=cwd, env=env, log_path=log_path, mask=mask)
    code = runtime.run(spec, timeout_s)
    # Runtime.run answers 124 when it killed the command at the timeout (a command may exit
    # 124 itself, as `timeout` does: the time taken tells them apart).
    timed_out = code == TIMEOUT_EXIT_CODE and time.monotonic() - started >= timeout_s
    runtime.note(
        log_path, f"==> {label} {'succeeded' if code == 0 else f'failed (exit code {code})'}"
    )
    return CommandResult(
        ok=code == 0,
        exit_code=code,
        log_tail=tuple(runtime.tail(log_path, 20)),
        timed_out=timed_out,
    )


def indent(lines: tuple[str, ...]) -> str:
    return "\n".join(f"    | {line}" for line in lines[-15:])
