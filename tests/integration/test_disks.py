"""Persistent disks against a real daemon: the disk outlives deploys and rollbacks, is seen at
its mountPath (bind-mounted, or linked inside the tree), has its size enforced, and a deploy
of its one instance pauses requests instead of failing them."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, load

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="disks are mounted as root")


@pytest.fixture
def mount_path() -> Iterator[str]:
    path = f"/srv/shipyard-test-{secrets.token_hex(4)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)  # the empty mount point left on the host


def disk_web(name: str, version: str, mount: str, size_gb: int = 1) -> str:
    extra = f"    disk: {{name: data, mountPath: {mount}, sizeGB: {size_gb}}}\n"
    return web(name, version, instances=1, extra=extra)


def read(sy: Shipyard, service: str, path: str) -> tuple[int, str]:
    return sy.get(f"{service}.localhost", f"/file?path={quote(path)}")


def write(sy: Shipyard, service: str, path: str, text: str) -> None:
    status, body = sy.get(f"{service}.localhost", f"/file?path={quote(path)}&write={quote(text)}")
    assert status == 200, body


def test_a_disk_outlives_deploys_and_rollbacks(
    shipyard: Shipyard, project: Project, mount_path: str
) -> None:
    bp = project.blueprint("services:\n" + disk_web("keeper", "v1", mount_path))
    deploy(shipyard, bp)
    write(shipyard, "keeper", f"{mount_path}/note.txt", "written by v1")
    # the host's directory is only a mount point: the data is on the disk, not there
    assert not Path(mount_path, "note.txt").exists()
    with load(shipyard.http_port, "keeper.localhost") as traffic:
        deploy(shipyard, project.blueprint("services:\n" + disk_web("keeper", "v2", mount_path)))
    assert traffic.failed == 0, traffic.errors[:5]
    assert traffic.versions.get("v2", 0) > 0
    assert read(shipyard, "keeper", f"{mount_path}/note.txt") == (200, "written by v1")
    svc = shipyard.service("keeper")
    assert len(svc["instances"]) == 1
    disk = svc["disk"]
    assert disk["name"] == "data" and disk["mount_path"] == mount_path
    assert disk["enforced"] and disk["used_bytes"] > 0
    shipyard.ok("rollback", "keeper", "--wait")
    assert shipyard.get_json("keeper")["version"] == "v1"
    assert read(shipyard, "keeper", f"{mount_path}/note.txt") == (200, "written by v1")
    scale = shipyard.cli("scale", "keeper=2")
    assert scale.code != 0 and "runs one instance" in scale.err


def test_a_disk_inside_the_tree_and_its_size_limit(shipyard: Shipyard, project: Project) -> None:
    mount = "/opt/render/project/src/pyweb/storage"
    bp = project.blueprint("services:\n" + disk_web("tree", "v1", mount))
    deploy(shipyard, bp)
    write(shipyard, "tree", "storage/kept.txt", "in the tree")  # relative to its workdir
    deploy(shipyard, project.blueprint("services:\n" + disk_web("tree", "v2", mount)))
    assert read(shipyard, "tree", "storage/kept.txt") == (200, "in the tree")
    # 1 GB is a hard limit: the disk is a filesystem of that size, in a sparse image
    mounted = shipyard.home / "disks" / "tree" / "data"
    fs = os.statvfs(mounted)
    assert 0.85 * 1024**3 < fs.f_blocks * fs.f_frsize <= 1024**3
    with pytest.raises(OSError) as full, open(mounted / "too-big", "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, 2 * 1024**3)
    assert full.value.errno == errno.ENOSPC
    (mounted / "too-big").unlink()
    image = shipyard.home / "disks" / "tree" / "data.img"
    assert image.stat().st_size == 1024**3
    assert image.stat().st_blocks * 512 < 200 * 1024**2  # only what is used takes space


def test_disk_snapshots_and_a_restore(
    shipyard: Shipyard, project: Project, mount_path: str
) -> None:
    bp = project.blueprint("services:\n" + disk_web("photos", "v1", mount_path))
    deploy(shipyard, bp)
    write(shipyard, "photos", f"{mount_path}/album.txt", "first version")
    taken = json.loads(shipyard.ok("disk", "snapshot", "photos", "--json").out)
    assert taken["service"] == "photos" and taken["used_bytes"] > 0
    write(shipyard, "photos", f"{mount_path}/album.txt", "overwritten by mistake")
    write(shipyard, "photos", f"{mount_path}/extra.txt", "added later")
    listed = json.loads(shipyard.ok("disk", "snapshots", "photos", "--json").out)
    assert [s["id"] for s in listed] == [taken["id"]]
    sealed = shipyard.home / "backups" / "disks" / "photos" / f"{taken['id']}.sealed"
    assert b"first version" not in sealed.read_bytes()  # encrypted at rest
    shipyard.ok("disk", "restore", "photos", "--snapshot", taken["id"])
    assert read(shipyard, "photos", f"{mount_path}/album.txt") == (200, "first version")
    assert read(shipyard, "photos", f"{mount_path}/extra.txt")[0] == 404
    missing = shipyard.cli("disk", "restore", "photos", "--snapshot", "nope")
    assert missing.code == 4 and taken["id"] in missing.err, missing.text
    no_disk = shipyard.cli("disk", "snapshot", "nodisk")
    assert no_disk.code == 4
