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

import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from shipyard.blueprint.scalars import RENDER_PROJECT_DIR
from shipyard.blueprint.spec import DiskSpec
from shipyard.context import Context
from shipyard.errors import NotFound, RuntimeFailure, UsageError

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

    def archive(self, mountpoint: Path, dest: Path, key: bytes) -> int:
        """A consistent, sealed copy of the disk's files into ``dest``; its size. Blocks."""
        ...

    def unarchive(self, mountpoint: Path, src: Path, key: bytes) -> None:
        """The disk's files replaced by the sealed copy ``src`` (checked first). Blocks."""
        ...


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


# --- snapshots ---------------------------------------------------------------------------------

SNAPSHOT_RETENTION_DAYS = 7  # as Render keeps a disk's daily snapshots
SNAPSHOT_SCHEDULE = "30 3 * * *"  # daily, 03:30 UTC


@dataclass(frozen=True)
class Snapshot:
    id: str
    service: str
    disk: str
    created_at: float
    size_bytes: int  # sealed
    used_bytes: int  # the disk's data when it was taken
    trigger: str


def snapshots_dir(ctx: Context, service: str) -> Path:
    return ctx.settings.home / "backups" / "disks" / service


def _key(ctx: Context, service: str) -> bytes:
    """The service's snapshot key (a secret of its own, made on first use)."""
    owner = f"disk:{service}"
    stored = ctx.data.datastore_secrets(owner).get("snapshot_key")
    if stored is not None:
        return bytes.fromhex(ctx.box.decrypt(stored))
    key = secrets.token_bytes(32)
    ctx.data.save_datastore_secret(owner, "snapshot_key", ctx.box.encrypt(key.hex()))
    return key


def snapshots(ctx: Context, service: str) -> list[Snapshot]:
    """A service's disk snapshots, oldest first."""
    folder = snapshots_dir(ctx, service)
    found = []
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if meta.with_suffix(".sealed").exists():
            found.append(Snapshot(**data))
    return sorted(found, key=lambda s: s.created_at)


def _disk_of(ctx: Context, service: str) -> DiskSpec:
    disk = ctx.state.service(service).spec.disk
    if disk is None:
        raise UsageError(f"{service} has no disk.", fields={"service": service})
    if ctx.volumes is None:
        raise RuntimeFailure("this Shipyard has no disk driver")
    return disk


def take_snapshot(ctx: Context, service: str, trigger: str = "manual") -> Snapshot:
    """A snapshot of the service's disk now (the service keeps running); snapshots older than
    the retention are removed, never the newest."""
    disk = _disk_of(ctx, service)
    assert ctx.volumes is not None
    ctx.disk.require()
    _image, mountpoint = location(ctx, service, disk)
    folder = snapshots_dir(ctx, service)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = ctx.clock.now()
    snap_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + f"-{secrets.token_hex(2)}"
    used = ctx.volumes.usage(mountpoint)
    size = ctx.volumes.archive(mountpoint, folder / f"{snap_id}.sealed", _key(ctx, service))
    snap = Snapshot(snap_id, service, disk.name, now, size, used, trigger)
    (folder / f"{snap_id}.json").write_text(json.dumps(asdict(snap)))
    cutoff = now - SNAPSHOT_RETENTION_DAYS * 86400
    for old in snapshots(ctx, service)[:-1]:
        if old.created_at < cutoff:
            (folder / f"{old.id}.sealed").unlink(missing_ok=True)
            (folder / f"{old.id}.json").unlink(missing_ok=True)
    return snap


def restore_snapshot(ctx: Context, service: str, snap_id: str) -> Snapshot:
    """The disk's files replaced by those of snapshot ``snap_id``. The caller has stopped the
    service's instance (one writer) and starts it again afterwards."""
    disk = _disk_of(ctx, service)
    assert ctx.volumes is not None
    chosen = next((s for s in snapshots(ctx, service) if s.id == snap_id), None)
    if chosen is None:
        ids = ", ".join(s.id for s in snapshots(ctx, service)) or "none"
        raise NotFound(f"{service} has no disk snapshot {snap_id!r} (snapshots: {ids}).",
                       fields={"service": service, "snapshot": snap_id})  # fmt: skip
    _image, mountpoint = location(ctx, service, disk)
    attach(ctx, service, disk)
    src = snapshots_dir(ctx, service) / f"{snap_id}.sealed"
    ctx.volumes.unarchive(mountpoint, src, _key(ctx, service))
    return chosen
