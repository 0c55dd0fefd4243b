"""Release trees: private modes, and unchanged files shared with the previous release."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shipyard.release.files import make_private, share_unchanged


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_unchanged_files_share_their_data_changed_ones_do_not(tmp_path: Path) -> None:
    old, new = tmp_path / "1", tmp_path / "2"
    same = {"node_modules/a/index.js": "x" * 5000, "src/app.js": "same", "lock": ""}
    _tree(old, {**same, "src/changed.js": "v1", "only-old": "o"})
    _tree(new, {**same, "src/changed.js": "v2", "only-new": "n"})
    os.chmod(new / "src" / "app.js", 0o700)  # another mode: not shared (one inode, one mode)
    shared = share_unchanged(new, old)
    assert shared.files == 1 and shared.bytes == 5000 and shared.method in ("hardlink", "reflink")
    a, b = new / "node_modules/a/index.js", old / "node_modules/a/index.js"
    assert a.read_text() == "x" * 5000
    if shared.method == "hardlink":
        assert a.stat().st_ino == b.stat().st_ino
    assert (new / "src/changed.js").read_text() == "v2"
    assert (new / "src/app.js").stat().st_ino != (old / "src/app.js").stat().st_ino
    assert not list(new.rglob("*.shipyard-share"))
    assert (new / "lock").stat().st_ino != (old / "lock").stat().st_ino  # empty: a marker
    assert share_unchanged(new, old).files == 0  # already shared: nothing to do


def test_make_private_strips_group_and_other_bits(tmp_path: Path) -> None:
    _tree(tmp_path / "t", {"bin/run": "#!/bin/sh\n", "README": "hi"})
    os.chmod(tmp_path / "t" / "bin" / "run", 0o755)
    os.chmod(tmp_path / "t" / "README", 0o664)
    (tmp_path / "t" / "link").symlink_to("README")
    make_private(tmp_path / "t")
    modes = {
        p.name: stat.S_IMODE(p.lstat().st_mode)
        for p in [tmp_path / "t", *(tmp_path / "t").rglob("*")]
        if not p.is_symlink()
    }
    assert modes == {"t": 0o700, "bin": 0o700, "run": 0o700, "README": 0o600}
