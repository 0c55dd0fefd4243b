"""Read and follow a service's logs: build logs per release, runtime logs per instance."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

from shipyard.context import Context
from shipyard.drivers.local.logfiles import Follower
from shipyard.records import InstanceState
from shipyard.release.store import release_paths

STAMP_LEN = len("2026-12-02T05:48:00.123456Z")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ")
FOLLOW_POLL_S = 0.25
FOLLOW_MAX_S = 3600.0


def _build_log(ctx: Context, service: str, release: int | None) -> Path | None:
    if release is None:
        rows = ctx.state.releases(service)
        if not rows:
            return None
        release = rows[0].number
    ctx.state.release(service, release)
    return release_paths(ctx.settings.services_dir, service, release).build_log


def _instance_logs(ctx: Context, service: str, release: int | None) -> dict[str, Path]:
    instances = ctx.state.instances(service)
    if not instances:  # nothing running: show the most recent instances' logs
        instances = ctx.state.instances(
            service, states=(InstanceState.STOPPED, InstanceState.FAILED)
        )[-4:]
    return {i.id: Path(i.log_path) for i in instances if release is None or i.release == release}


def read_logs(
    ctx: Context, service: str, *, build: bool, lines: int, release: int | None
) -> list[str]:
    if build:
        path = _build_log(ctx, service, release)
        return ctx.runtime.tail(path, lines) if path else []
    # The last lines of each instance, merged in time order (each line starts with the UTC
    # time its log writer read it). The sort is stable: lines of one instance keep their order,
    # and lines without a time (logs older than log writers) come first, in theirs.
    timed: list[tuple[str, str]] = []
    for inst_id, path in _instance_logs(ctx, service, release).items():
        for line in ctx.runtime.tail(path, lines):
            stamp = line[:STAMP_LEN] if _STAMP.match(line) else ""
            timed.append((stamp, f"[{inst_id}] {line}"))
    timed.sort(key=lambda item: item[0])
    return [line for _, line in timed[-lines:]]


async def follow_logs(
    ctx: Context, service: str, *, build: bool, lines: int, release: int | None
) -> AsyncIterator[str]:
    """Yield the last ``lines`` lines, then new lines as they are written (new instances too),
    across rotations. The sizes are taken before the last lines are read, so a line written in
    between is printed once, never lost. Async, so a follower holds no worker thread while it
    waits."""

    def sources() -> dict[str, Path]:
        if build:
            path = _build_log(ctx, service, release)
            return {"": path} if path else {}
        return _instance_logs(ctx, service, release)

    followers: dict[str, Follower] = {}
    last: list[str] = []
    for key, path in sources().items():
        followers[key] = Follower(path)
        prefix = f"[{key}] " if key else ""
        last.extend(prefix + line for line in followers[key].last(lines))
    for line in last[-lines:]:
        yield line + "\n"
    deadline = time.monotonic() + FOLLOW_MAX_S
    while time.monotonic() < deadline:
        for key, path in sources().items():
            followers.setdefault(key, Follower(path))  # a new instance: from its beginning
        for key, follower in followers.items():
            prefix = f"[{key}] " if key else ""
            for line in follower.read():
                yield f"{prefix}{line}\n"
        await asyncio.sleep(FOLLOW_POLL_S)
