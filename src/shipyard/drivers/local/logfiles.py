"""Instance log files: bounded size by copy-truncate rotation.

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
