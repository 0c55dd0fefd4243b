"""Read and follow a service's logs: build logs per release, runtime logs per instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from shipyard.controlplane.context import Context
from shipyard.drivers.local.process import tail
from shipyard.release.store import release_paths

FOLLOW_POLL_S = 0.25
FOLLOW_MAX_S = 3600.0


def _build_log(ctx: Context, service: str, release: int | None) -> Path | None:
    if release is None:
        rows = ctx.state.releases(service)
        if not rows:
            return None
        release = int(rows[0]["number"])
    ctx.state.release(service, release)
    return release_paths(ctx.settings.services_dir, service, release).build_log


def _instance_logs(ctx: Context, service: str, release: int | None) -> dict[str, Path]:
    instances = ctx.state.instances(service)
    if not instances:  # nothing running: show the most recent instances' logs
        instances = ctx.state.instances(service, states=("stopped", "failed"))[-4:]
    return {i.id: Path(i.log_path) for i in instances if release is None or i.release == release}


def read_logs(
    ctx: Context, service: str, *, build: bool, lines: int, release: int | None
) -> list[str]:
    if build:
        path = _build_log(ctx, service, release)
        return tail(path, lines) if path else []
    out: list[str] = []
    for inst_id, path in _instance_logs(ctx, service, release).items():
        out.extend(f"[{inst_id}] {line}" for line in tail(path, lines))
    return out[-lines:] if len(out) > lines else out


async def follow_logs(
    ctx: Context, service: str, *, build: bool, lines: int, release: int | None
) -> AsyncIterator[str]:
    """Yield the last ``lines`` lines, then new lines as they are written (new instances too).

    Async, so a follower holds no worker thread while it waits."""
    for line in read_logs(ctx, service, build=build, lines=lines, release=release):
        yield line + "\n"
    offsets: dict[str, tuple[Path, int]] = {}

    def sources() -> dict[str, Path]:
        if build:
            path = _build_log(ctx, service, release)
            return {"": path} if path else {}
        return _instance_logs(ctx, service, release)

    for key, path in sources().items():
        offsets[key] = (path, _size(path))
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(1 << 20)
    except FileNotFoundError:
        return b""
