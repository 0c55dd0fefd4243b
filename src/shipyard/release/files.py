"""Release trees on disk: private to Shipyard's user, and sharing unchanged files with the
previous release instead of holding full copies.

A build may write anywhere in its release tree, so files are shared only AFTER the build: a file
of the new release whose bytes and mode equal those of the same path in the previous release is
replaced by a reflink of it where the filesystem has them (copy-on-write: fully independent), else
a hard link (one inode: the release trees are immutable once built, like Render's build
artifacts; an app that rewrites a file of its own tree in place rewrites it for the releases
that share it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import filecmp
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("shipyard.release")
_FICLONE = 0x40049409  # ioctl(dest_fd, FICLONE, src_fd): a reflink (btrfs, xfs, bcachefs)


def make_private(root: Path) -> None:
    """Remove group and other permission bits from everything under ``root`` (symlinks have no
    permissions of their own and are left alone); ``root`` itself included."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _strip(os.path.join(dirpath, name))
    _strip(str(root))


def _strip(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # vanished meanwhile
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            os.chmod(path, stat.S_IMODE(mode) & 0o700)


@dataclass(frozen=True)
class Shared:
    files: int  # files of the new release now sharing their data with the previous one
    bytes: int  # bytes those files no longer hold twice
    method: str  # "reflink", "hardlink" or "none"


def share_unchanged(new: Path, previous: Path) -> Shared:
    """Replace each regular file under ``new`` that equals the file at the same relative path
    under ``previous`` (same size, mode and bytes) by a reflink or hard link of it."""
    files = saved = 0
    method = "none"
    for dirpath, _dirnames, filenames in os.walk(new):
        here = Path(dirpath)
        theirs = previous / here.relative_to(new)
        for name in filenames:
            mine, old = here / name, theirs / name
            if not _same_file_data(mine, old):
                continue
            try:
                how = _share(mine, old, prefer=method)
            except OSError as exc:  # sharing saves space; it never fails a release
                log.warning("could not share %s with %s: %s", mine, old, exc)
                continue
            if how is None:
                continue
            method = how
            files += 1
            saved += mine.stat().st_size
    return Shared(files=files, bytes=saved, method=method)


def _same_file_data(mine: Path, old: Path) -> bool:
    try:
        a, b = mine.lstat(), old.lstat()
    except OSError:
        return False
    if not (stat.S_ISREG(a.st_mode) and stat.S_ISREG(b.st_mode)):
        return False
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return False  # already shared
    if a.st_size != b.st_size or stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode):
        return False
    if a.st_size == 0:
        return False  # nothing to save; empty files are often markers and locks
    try:
        return filecmp.cmp(mine, old, shallow=False)
    except OSError:
        return False


def _share(mine: Path, old: Path, prefer: str) -> str | None:
    """Put a reflink (else a hard link) of ``old`` at ``mine``, atomically; the method used, or
    None if neither works here (``mine`` is then left as it was)."""
    tmp = mine.with_name(f".{mine.name}.shipyard-share")
    if prefer != "hardlink" and _reflink(old, tmp):
        st = mine.lstat()
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, mine)
        return "reflink"
    try:
        os.link(old, tmp)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        return None
    os.replace(tmp, mine)
    return "hardlink"


def _reflink(src: Path, dest: Path) -> bool:
    try:
        with src.open("rb") as s, open(dest, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL):
            raise
        return False
    return True
