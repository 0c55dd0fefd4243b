"""Log directories written by ``shipyard-logd`` (native/logd/logd.c), and reading them.

Each process the local runtime starts writes its stdout+stderr into a pipe read by its own
``shipyard-logd``, which keeps a directory::

    current                 the file being written (each line prefixed with its UTC time)
    @<UTC time>.s           rotated files, oldest first by name; at most KEEP_FILES of them
    dropped                 how many lines a full disk made it drop (decimal)
    lock                    held by the writer

The writer rotates by renaming ``current`` at a line boundary, so no line is lost or split,
and it keeps at most ``MAX_FILE_BYTES * (KEEP_FILES + 1)`` bytes (50 MiB) per directory, also
while the daemon is down: it outlives the daemon like the instance does, and exits when the
instance's output closes. A plain file (a log written before log directories) is read as
a directory holding only ``current``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 10 * 1024 * 1024
KEEP_FILES = 4
MAX_LOG_BYTES = MAX_FILE_BYTES * (KEEP_FILES + 1)
LOGD = "shipyard-logd"
MISSING_LOGD = (
    f"The log writer {LOGD} is not installed: `make install` builds it (native/logd/logd.c) "
    "next to Shipyard's Python."
)


def find_logd() -> str | None:
    """The log writer: next to this Python (``make install`` builds it into the venv), else on
    PATH."""
    beside = Path(sys.executable).parent / LOGD
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(LOGD)


def logd_command(logd: str, directory: Path) -> list[str]:
    return [logd, "-t", "-s", str(MAX_FILE_BYTES), "-n", str(KEEP_FILES), str(directory)]


def log_files(path: Path) -> list[Path]:
    """The files of a log, oldest first: rotated ones, then ``current``."""
    if not path.is_dir():
        return [path] if path.exists() else []
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    rotated = sorted(n for n in names if n.startswith("@") and n.endswith(".s"))
    current = ["current"] if "current" in names else []
    return [path / n for n in (*rotated, *current)]


def dropped_lines(path: Path) -> int:
    """Lines the writer could not store (a full disk); 0 when none or unknown."""
    try:
        return int((path / "dropped").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def log_bytes(path: Path) -> int:
    total = 0
    for file in log_files(path):
        try:
            total += file.stat().st_size
        except FileNotFoundError:
            continue
    return total


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log (a directory or a plain file); [] if it does not
    exist. Reads from the end: only as much as the lines need, however large the log."""
    if lines <= 0:
        return []
    found: list[str] = []
    for file in reversed(log_files(path)):
        try:
            found = _tail_file(file, lines - len(found)) + found
        except FileNotFoundError:  # rotated away while we looked: its lines are elsewhere
            continue
        if len(found) >= lines:
            break
    return found[-lines:]


def _tail_file(path: Path, lines: int, end: int | None = None) -> list[str]:
    """The last ``lines`` lines of ``path`` before byte ``end`` (default: its end)."""
    with path.open("rb") as f:
        stop = f.seek(0, os.SEEK_END) if end is None else end
        pos, data, block = stop, b"", 8192
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


def _complete_end(path: Path, size: int) -> int:
    """The offset just after the last newline before ``size`` (0 if none in the last MiB)."""
    start = max(0, size - (1 << 20))
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(size - start)
    return start + data.rfind(b"\n") + 1


@dataclass
class Follower:
    """Reads what is appended to a log from a point on, across rotations: files are known by
    inode, so ``current`` renamed to ``@....s`` is read to its end, then the new ``current``
    from its start. Nothing is read twice, no complete line is skipped."""

    path: Path
    offsets: dict[int, int] = field(default_factory=dict)  # inode -> bytes already read

    def _files(self) -> list[tuple[Path, int, int]]:
        out = []
        for file in log_files(self.path):
            try:
                st = file.stat()
            except FileNotFoundError:
                continue
            out.append((file, st.st_ino, st.st_size))
        return out

    def read(self, limit: int = 1 << 20) -> list[str]:
        """The complete lines written since the last call (a partial last line waits)."""
        out: list[str] = []
        files = self._files()
        live = {inode for _, inode, _ in files}
        for file, inode, size in files:
            offset = self.offsets.get(inode, 0)
            if size < offset:  # a plain file truncated by its writer: start again
                offset = 0
            if size == offset:
                self.offsets[inode] = offset
                continue
            try:
                with file.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(limit)
            except FileNotFoundError:
                continue
            complete = chunk.rfind(b"\n") + 1
            self.offsets[inode] = offset + complete
            out.extend(chunk[:complete].decode(errors="replace").splitlines())
            if offset + len(chunk) < size:
                break  # behind: finish this file first, later files wait (order is kept)
        self.offsets = {i: o for i, o in self.offsets.items() if i in live}
        return out

    def last(self, lines: int) -> list[str]:
        """The last ``lines`` complete lines; ``read`` then returns what follows them (the
        sizes are taken first, so a line written meanwhile is read later, never lost)."""
        files = self._files()
        self.offsets = {}
        ends: list[tuple[Path, int]] = []
        for n, (file, inode, size) in enumerate(files):
            try:
                end = _complete_end(file, size) if n == len(files) - 1 else size
            except FileNotFoundError:
                continue
            self.offsets[inode] = end
            ends.append((file, end))
        found: list[str] = []
        for file, end in reversed(ends):
            try:
                found = _tail_file(file, lines - len(found), end) + found
            except FileNotFoundError:
                continue
            if len(found) >= lines:
                break
        return found[-lines:] if lines > 0 else []
