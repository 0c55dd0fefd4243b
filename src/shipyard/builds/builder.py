"""Build: run a service's buildCommand in its release workdir, logging to build.log.

The workdir is a fresh copy of the repository; the command runs in ``rootDir`` with the
service's resolved env plus the platform variables, under /bin/bash like Render's builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.run.runtime import ProcessSpec, Runtime


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    exit_code: int
    log_tail: tuple[str, ...]


def run_logged(
    runtime: Runtime,
    *,
    label: str,
    command: str,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float,
) -> CommandResult:
    """Run one command to completion, adding a header, its output and its outcome to the log
    ``log_path``."""
    runtime.note(log_path, f"==> {label}: {command}")
    code = runtime.run(ProcessSpec(command=command, cwd=cwd, env=env, log_path=log_path), timeout_s)
    runtime.note(
        log_path, f"==> {label} {'succeeded' if code == 0 else f'failed (exit code {code})'}"
    )
    return CommandResult(ok=code == 0, exit_code=code, log_tail=tuple(runtime.tail(log_path, 20)))


def indent(lines: tuple[str, ...]) -> str:
    return "\n".join(f"    | {line}" for line in lines[-15:])
