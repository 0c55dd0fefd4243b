"""Persistent disks of services (Render's ``disk``): one per service, kept across deploys,
restarts and rollbacks (a rollback runs the old code on today's disk, as on Render), never
deleted by a deploy.

Where the app sees it (``mountPath``):

* inside Render's working tree (``/opt/render/project/src/<path>``): a symlink at ``<path>``
  in each release's tree, replacing what the source had there;
* anywhere else (``/var/data``): bind-mounted at that path in a private mount namespace of
  each instance (the host's directory stays an empty mount point); without root, a symlink at
  that path when nothing is there yet.

A service with a disk runs one instance and deploys with the ``recreate`` strategy: the old
instance is drained and stopped before the new one starts, while HAProxy holds requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipyard.blueprint.scalars import RENDER_PROJECT_DIR
from shipyard.blueprint.spec import DiskSpec
from shipyard.context import Context
from shipyard.errors import RuntimeFailure

GB = 1024**3


@dataclass(frozen=True)
class Volume:
    path: Path  # where its data is, on this machine
    enforced: bool  # the size is a hard limit (a filesystem of that size), else reported
    size_bytes: int


class Volumes(Protocol):
    """Disks' storage (drivers/local/volumes.py). ``ensure`` is idempotent and may block a
    few seconds (creating a filesystem); the others return quickly."""

    def ensure(self, image: Path, mountpoint: Path, size_bytes: int) -> Volume: ...

    def release(self, mountpoint: Path) -> None: ...

    def usage(self, mountpoint: Path) -> int: ...


def location(ctx: Context, service: str, disk: DiskSpec) -> tuple[Path, Path]:
    """(image file, mount point) of a service's disk, under SHIPYARD_HOME/disks/<service>."""
    base = ctx.settings.home / "disks" / service
    return base / f"{disk.name}.img", base / disk.name


def attach(ctx: Context, service: str, disk: DiskSpec) -> Volume:
    if ctx.volumes is None:
        raise RuntimeFailure("this Shipyard has no disk driver")
    image, mountpoint = location(ctx, service, disk)
    return ctx.volumes.ensure(image, mountpoint, disk.size_gb * GB)


def in_tree(disk: DiskSpec) -> str | None:
    """The path inside the working tree ``disk`` is mounted at, if it is there."""
    prefix = RENDER_PROJECT_DIR + "/"
    return disk.mount_path[len(prefix) :] if disk.mount_path.startswith(prefix) else None


def binds(
    ctx: Context, service: str, disk: DiskSpec | None, app: Path
) -> tuple[tuple[Path, Path], ...]:
    """Attach the disk and make it visible to an instance whose release tree is ``app``:
    returns the (source, target) bind mounts its process needs."""
    if disk is None:
        return ()
    volume = attach(ctx, service, disk)
    inside = in_tree(disk)
    if inside is None:
        return ((volume.path, Path(disk.mount_path)),)
    link = app / inside
    if link.is_symlink():
        if Path(link.readlink()) == volume.path:
            return ()
        link.unlink()
    elif link.is_dir():
        import shutil

        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(volume.path, target_is_directory=True)
    return ()


def release_all(ctx: Context) -> None:
    """`shipyard down`: unmount every disk (their data stays)."""
    if ctx.volumes is None:
        return
    for svc in ctx.state.services():
        if svc.spec.disk is not None:
            _image, mountpoint = location(ctx, svc.name, svc.spec.disk)
            try:
                ctx.volumes.release(mountpoint)
            except RuntimeFailure:
                continue
