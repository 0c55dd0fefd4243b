"""Release snapshots of a directory: private modes, links kept inside the copy, links that
leave the source tree refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shipyard.errors import UsageError
from shipyard.source.snapshot import copy_tree


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_copy_is_private_and_keeps_owner_bits_and_mtimes(tmp_path: Path) -> None:
    src = tmp_path / "repo"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "run").write_text("#!/bin/sh\n")
    os.chmod(src / "bin" / "run", 0o755)
    (src / "README").write_text("hi")
    os.chmod(src / "README", 0o644)
    os.utime(src / "README", (1_000_000, 1_000_000))
    os.mkfifo(src / "pipe")  # a fifo would block a naive copy: left out
    copy_tree(src, tmp_path / "copy")
    copy = tmp_path / "copy"
    assert _mode(copy / "bin" / "run") == 0o700 and _mode(copy / "README") == 0o600
    assert _mode(copy) == 0o700 and _mode(copy / "bin") == 0o700
    assert (copy / "README").stat().st_mtime == 1_000_000
    assert not (copy / "pipe").exists()


def test_links_inside_the_tree_point_into_the_copy(tmp_path: Path) -> None:
    src = tmp_path / "repo"
    (src / "shared").mkdir(parents=True)
    (src / "shared" / "conf.txt").write_text("v1")
    (src / "app").mkdir()
    (src / "app" / "relative").symlink_to("../shared/conf.txt")
    (src / "app" / "absolute").symlink_to(src / "shared" / "conf.txt")  # absolute, inside
    (src / "current").symlink_to("app")  # a rootDir reached through a link
    copy = tmp_path / "copy"
    copy_tree(src, copy)
    (src / "shared" / "conf.txt").write_text("edited after the snapshot")
    for name in ("relative", "absolute"):
        link = copy / "app" / name
        assert not os.readlink(link).startswith("/")
        assert link.read_text() == "v1"  # the snapshot's file, not the user's live one
    assert (copy / "current").resolve() == (copy / "app").resolve()


@pytest.mark.parametrize("target", ["/etc/hostname", "../../outside.txt"])
def test_a_link_out_of_the_tree_is_refused_by_name(tmp_path: Path, target: str) -> None:
    src = tmp_path / "a" / "repo"
    (src / "app").mkdir(parents=True)
    (tmp_path / "a" / "outside.txt").write_text("x")
    (src / "app" / "escape").symlink_to(target)
    with pytest.raises(UsageError) as err:
        copy_tree(src, tmp_path / "copy")
    message = err.value.message
    assert "app/escape is a symlink to" in message and "outside the source tree" in message


def test_a_linked_directory_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    src = tmp_path / "repo"
    src.mkdir()
    (src / "web").symlink_to(live, target_is_directory=True)
    with pytest.raises(UsageError, match="web is a symlink"):
        copy_tree(src, tmp_path / "copy")
