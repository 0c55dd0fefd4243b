"""Disk space of SHIPYARD_HOME: a check before work that needs space, the error every stage
raises when space runs out, and a small reserve that keeps the state database writable.

SQLite cannot record that an operation failed on a full disk, so the operation would stay
"running" forever. Shipyard keeps a reserve file (``.reserve``) in its home; when a write
fails for lack of space it deletes the reserve, so the failure itself can be recorded, and the
supervisor puts the reserve back once there is room again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import NoDiskSpace

log = logging.getLogger("shipyard.disk")
RESERVE_BYTES = 32 * 1024 * 1024
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE = f"[Errno {errno.ENOSPC}]"


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` (or what caused it) says the disk or quota is full."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:  # a context chain may loop
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return any(
        (isinstance(e, OSError) and e.errno in _FULL_ERRNOS)
        or (isinstance(e, shutil.Error) and _NO_SPACE in str(e))  # copytree's error list
        or (isinstance(e, sqlite3.Error) and "disk is full" in str(e).lower())
        or isinstance(e, NoDiskSpace)
        for e in chain
    )


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover - the loop returns at GB


@dataclass(frozen=True)
class DiskStatus:
    path: str
    free_bytes: int
    total_bytes: int
    min_free_bytes: int

    @property
    def low(self) -> bool:
        return self.free_bytes < self.min_free_bytes

    def describe(self) -> str:
        return (
            f"{human(self.free_bytes)} free of {human(self.total_bytes)} on {self.path} "
            f"(minimum {human(self.min_free_bytes)}, SHIPYARD_MIN_FREE_MB)"
        )


class DiskGuard:
    """Space checks and the reserve for one SHIPYARD_HOME. Thread-safe."""

    def __init__(self, home: Path, min_free_bytes: int, reserve_bytes: int = RESERVE_BYTES):
        self.home = home
        self.min_free_bytes = min_free_bytes
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()

    @property
    def reserve_path(self) -> Path:
        return self.home / ".reserve"

    def status(self) -> DiskStatus:
        try:
            usage = shutil.disk_usage(self.home)
        except OSError:
            return DiskStatus(str(self.home), 0, 0, self.min_free_bytes)
        return DiskStatus(str(self.home), usage.free, usage.total, self.min_free_bytes)

    def require(self, needed_bytes: int = 0) -> None:
        """NoDiskSpace unless ``needed_bytes`` plus the configured minimum are free."""
        status = self.status()
        needed = needed_bytes + self.min_free_bytes
        if status.free_bytes < needed:
            raise self.no_space(needed)

    def no_space(self, needed: int | None = None, during: str = "") -> NoDiskSpace:
        status = self.status()
        wanted = human(needed if needed is not None else self.min_free_bytes)
        where = f" during {during}" if during else ""
        return NoDiskSpace(
            f"not enough disk space on {status.path}: {human(status.free_bytes)} free, "
            f"{wanted} needed{where} (the minimum is SHIPYARD_MIN_FREE_MB); free some space "
            "and deploy again, the current release keeps serving",
            fields={"path": status.path, "free_bytes": status.free_bytes,
                    "needed_bytes": needed or self.min_free_bytes},
        )  # fmt: skip

    def release_reserve(self) -> bool:
        """Delete the reserve (a write just failed for lack of space); whether there was one."""
        with self._lock:
            try:
                self.reserve_path.unlink()
            except FileNotFoundError:
                return False
            log.warning("disk full on %s: released the %s reserve", self.home,
                        human(self.reserve_bytes))  # fmt: skip
            return True

    def ensure_reserve(self) -> None:
        """Put the reserve back when there is room for it and the minimum; never raises."""
        with self._lock:
            if self.reserve_path.exists():
                return
            if self.status().free_bytes < self.reserve_bytes + self.min_free_bytes:
                return
            tmp = self.reserve_path.with_name(".reserve.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.reserve_bytes)
                finally:
                    os.close(fd)
                os.replace(tmp, self.reserve_path)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
