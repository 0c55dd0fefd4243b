"""Disk space: what counts as a full disk, the check before work, the reserve."""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

import pytest

from shipyard.disk import DiskGuard, is_disk_full
from shipyard.errors import BuildFailed, NoDiskSpace


def test_a_full_disk_is_recognised_through_the_cause_chain() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise BuildFailed("copy failed") from inner
    except BuildFailed as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    copy_failed = shutil.Error([("a", "b", "[Errno 28] No space left on device: 'a' -> 'b'")])
    assert is_disk_full(copy_failed)  # copytree lists its failures in one error
    assert not is_disk_full(shutil.Error([("a", "b", "[Errno 13] Permission denied")]))
    looped = ValueError("a")
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped  # a cycle must not hang
    assert not is_disk_full(looped)


def test_require_names_the_path_the_free_and_the_needed_space(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, min_free_bytes=1 << 62)  # more than any disk
    with pytest.raises(NoDiskSpace) as err:
        guard.require(1000)
    message = err.value.message
    assert message.startswith(f"not enough disk space on {tmp_path}: ")
    assert " free, " in message and " needed" in message
    assert guard.status().low
    DiskGuard(tmp_path, min_free_bytes=0).require(1000)  # plenty


def test_the_reserve_is_released_once_and_put_back(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, min_free_bytes=0, reserve_bytes=1 << 20)
    guard.ensure_reserve()
    assert guard.reserve_path.stat().st_size == 1 << 20
    assert guard.release_reserve() and not guard.release_reserve()
    guard.ensure_reserve()
    assert guard.reserve_path.exists()
