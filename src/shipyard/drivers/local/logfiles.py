"""Instance log files: bounded size by copy-truncate rotation, and reading their end.

Instances hold their log open with O_APPEND, so truncating in place is safe: their next write
lands at the new end. One rotated copy (`<log>.1`) is kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MAX_LOG_BYTES = 50 * 1024 * 1024


def rotate_if_larger(path: Path, max_bytes: int = MAX_LOG_BYTES) -> bool:
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except FileNotFoundError:
        return False
    return True


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a (possibly huge) log file; [] if it does not exist."""
    if lines <= 0:
        return []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        pos, data, block = end, b"", 8192
        # Need lines+1 newlines (the last one usually terminates the final line).
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            block = min(block * 2, 1 << 20)
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    if pos == 0 and not text:
        return []
    return [line.removesuffix("\r") for line in text.split("\n")[-lines:]]
