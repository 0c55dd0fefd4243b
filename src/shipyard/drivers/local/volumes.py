"""Persistent disks on this machine (implements data/disks.py's Volumes protocol).

A disk is an ext4 filesystem in a sparse image file (``<name>.img``), loop-mounted on its
directory: its size is enforced by the filesystem itself (a full disk answers ENOSPC to the app,
as on Render), and it takes only the space its data uses. Mounts outlive the daemon (they are
the kernel's); ``release`` unmounts on `shipyard down`. Growing ``sizeGB`` grows the filesystem
online; a disk never shrinks.

Without root (no loop mounts), or when the kernel refuses them, a disk is a plain directory:
the size is then reported against its usage, not enforced (``Volume.enforced`` says which).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from shipyard.data.disks import Volume
from shipyard.drivers.local.sealed import seal, unseal
from shipyard.errors import RuntimeFailure

log = logging.getLogger("shipyard.volumes")
_TIMEOUT_S = 120


class LoopVolumes:
    def __init__(self, enforce: bool | None = None) -> None:
        """``enforce``: use loop-mounted filesystems (default: when running as root and the
        tools exist)."""
        if enforce is None:
            enforce = os.geteuid() == 0 and all(
                shutil.which(t) for t in ("mkfs.ext4", "mount", "umount", "resize2fs")
            )
        self.enforce = enforce

    def ensure(self, image: Path, mountpoint: Path, size_bytes: int) -> Volume:
        mountpoint.mkdir(parents=True, exist_ok=True)
        if not self.enforce:
            return Volume(mountpoint, enforced=False, size_bytes=size_bytes)
        if os.path.ismount(mountpoint):
            self._grow(image, mountpoint, size_bytes)
            return Volume(mountpoint, enforced=True, size_bytes=max(size_bytes, _size(image)))
        if any(mountpoint.iterdir()) and not image.exists():
            # a disk that was a plain directory before (made without root): keep it so
            log.warning("disk %s is a plain directory with data: its size is not enforced",
                        mountpoint)  # fmt: skip
            return Volume(mountpoint, enforced=False, size_bytes=size_bytes)
        if not image.exists():
            tmp = image.with_name(image.name + ".tmp")
            with open(tmp, "wb") as handle:
                handle.truncate(size_bytes)
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", image.stem[:16], str(tmp)])
            os.replace(tmp, image)
        try:
            _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(mountpoint)])
        except RuntimeFailure as exc:
            # Never the empty directory under it: the app would start on an empty disk.
            raise RuntimeFailure(
                f"cannot mount the disk {image} on {mountpoint}: {exc.message} (its data is in "
                "the image; the service does not start without it)",
                fields={"image": str(image)},
            ) from exc
        self._grow(image, mountpoint, size_bytes)
        return Volume(mountpoint, enforced=True, size_bytes=max(size_bytes, _size(image)))

    def _grow(self, image: Path, mountpoint: Path, size_bytes: int) -> None:
        if not image.exists() or _size(image) >= size_bytes:
            return
        with open(image, "r+b") as handle:
            handle.truncate(size_bytes)
        device = _loop_device(image)
        if device:
            _run(["losetup", "-c", device])
            _run(["resize2fs", device])
            log.info("disk %s grown to %d bytes", mountpoint, size_bytes)

    def release(self, mountpoint: Path) -> None:
        if os.path.ismount(mountpoint):
            _run(["umount", str(mountpoint)])

    def usage(self, mountpoint: Path) -> int:
        """Bytes used by the disk's data."""
        # what files use (an ext4 filesystem's own journal and tables are not the app's)
        return _walk_size(mountpoint) if mountpoint.exists() else 0

    def archive(self, mountpoint: Path, dest: Path, key: bytes) -> int:
        """A consistent copy of the disk's files, sealed with ``key`` into ``dest``; its size.
        A mounted filesystem is frozen (fsfreeze: writes wait, reads go on) while tar reads
        it, so the copy is one moment of the disk, like a crash-consistent snapshot."""
        plain = dest.with_name(dest.name + ".tar.zst.tmp")
        frozen = False
        try:
            if os.path.ismount(mountpoint) and shutil.which("fsfreeze"):
                _run(["fsfreeze", "--freeze", str(mountpoint)])
                frozen = True
            _run(["tar", "--sparse", "--zstd", "-cf", str(plain), "-C", str(mountpoint),
                  "--exclude=./lost+found", "."], timeout_s=None)  # fmt: skip
        finally:
            if frozen:
                _run(["fsfreeze", "--unfreeze", str(mountpoint)])
        try:
            return seal(plain, dest, key).sealed_bytes
        finally:
            plain.unlink(missing_ok=True)

    def unarchive(self, mountpoint: Path, src: Path, key: bytes) -> None:
        """Replace the disk's files with those of the sealed copy ``src`` (nothing may use the
        disk meanwhile). The copy is checked whole before anything is removed."""
        plain = mountpoint.parent / f".{mountpoint.name}.restore.tar.zst"
        try:
            unseal(src, plain, key)
            _run(["tar", "--zstd", "-tf", str(plain)], timeout_s=None)  # readable to its end
            for child in mountpoint.iterdir():
                if child.name == "lost+found":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            _run(["tar", "--sparse", "--zstd", "-xpf", str(plain), "-C", str(mountpoint)],
                 timeout_s=None)  # fmt: skip
        finally:
            plain.unlink(missing_ok=True)


def _walk_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _loop_device(image: Path) -> str | None:
    try:
        out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                             timeout=_TIMEOUT_S, check=False).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split(":", 1)[0] if out.strip() else None


def _run(argv: list[str], timeout_s: float | None = _TIMEOUT_S) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeFailure(f"{argv[0]} failed: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeFailure(f"{' '.join(argv[:2])} exited with {done.returncode}: {detail[0]}")
