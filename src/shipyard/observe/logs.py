"""Read and follow a service's logs: build logs per release, runtime logs per instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from shipyard.context import Context
from shipyard.records import InstanceState
from shipyard.release.store import release_paths

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
    out: list[str] = []
    for inst_id, path in _instance_logs(ctx, service, release).items():
        out.extend(f"[{inst_id}] {line}" for line in ctx.runtime.tail(path, lines))
    return out[-lines:] if len(out) > lines else out


async def follow_logs(
    ctx: Context, service: str, *, build: bool, lines: int, release: int | None
) -> AsyncIterator[str]:
    """Yield the last ``lines`` lines, then new lines as they are written (new instances too).

    The sizes are taken before the last lines are read, so a line written in between is
    printed once, never lost. Async, so a follower holds no worker thread while it waits."""

    def sources() -> dict[str, Path]:
        if build:
            path = _build_log(ctx, service, release)
            return {"": path} if path else {}
        return _instance_logs(ctx, service, release)

    offsets = {key: (path, _size(path)) for key, path in sources().items()}
    for line in _last_lines(offsets, lines):
        yield line + "\n"
    deadline = time.monotonic() + FOLLOW_MAX_S
    while time.monotonic() < deadline:
        for key, path in sources().items():
            offsets.setdefault(key, (path, 0))
        for key, (path, offset) in list(offsets.items()):
            if _size(path) < offset:  # rotated (truncated): start from its new beginning
                offset = 0
            chunk = _read_from(path, offset)
            complete = chunk.rfind(b"\n") + 1
            if complete:
                offsets[key] = (path, offset + complete)
                prefix = f"[{key}] " if key else ""
                for raw in chunk[:complete].decode(errors="replace").splitlines():
                    yield f"{prefix}{raw}\n"
        await asyncio.sleep(FOLLOW_POLL_S)


def _last_lines(offsets: dict[str, tuple[Path, int]], lines: int) -> list[str]:
    """The last ``lines`` complete lines before each source's offset, prefixed by its key; each
    offset moves back to the end of its last complete line (a partial one is followed)."""
    out: list[str] = []
    for key, (path, offset) in offsets.items():
        start = max(0, offset - (1 << 20))
        data = _read_from(path, start, offset - start)
        complete = data.rfind(b"\n") + 1
        offsets[key] = (path, start + complete)
        found = data[:complete].decode(errors="replace").split("\n")[:-1]
        if start > 0:
            found = found[1:]  # the window may begin inside a line
        prefix = f"[{key}] " if key else ""
        out.extend(prefix + line for line in found[-lines:])
    return out[-lines:]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int, limit: int = 1 << 20) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
    except FileNotFoundError:
        return b""
