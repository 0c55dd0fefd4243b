"""shipyard-logd (native/logd/logd.c), the per-instance log writer, as a real process: line
framing, size rotation without gaps, dropping and counting on a full disk without ever blocking
its input, signals and exit codes. The binary is built by `make install` next to the venv python.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pytest

from shipyard.clock import SystemClock, poll_until

LOGD = Path(sys.executable).parent / "shipyard-logd"
TS = rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z "
ARCHIVE = re.compile(r"@\d{8}T\d{6}\.\d{6}Z\.s")
REPORT = re.compile(TS + rb"shipyard-logd: dropped (\d+) lines \(No space left on device\)")
NUMBERED = re.compile(TS + rb"(\d{8}) x{90}")
CLOCK = SystemClock()


class Spawn(Protocol):
    def __call__(self, log_dir: Path, *args: str, umask: int = -1) -> subprocess.Popen[bytes]: ...


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts writers as the daemon will (own session, stdin a pipe); kills leftovers."""
    assert LOGD.is_file(), f"{LOGD} is missing: `make install` builds it"
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(log_dir: Path, *args: str, umask: int = -1) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(LOGD), *args, str(log_dir)],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            umask=umask,
        )
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.close()
        proc.stderr.close()


def stdin_fd(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdin is not None
    return proc.stdin.fileno()


def send(proc: subprocess.Popen[bytes], data: bytes) -> None:
    """Writes all of data into the writer's (blocking) stdin."""
    view = memoryview(data)
    while view:
        view = view[os.write(stdin_fd(proc), view) :]


def drained(proc: subprocess.Popen[bytes]) -> bool:
    """True once the writer has read everything sent into its pipe."""
    unread: int = struct.unpack("i", fcntl.ioctl(stdin_fd(proc), termios.FIONREAD, b"\0" * 4))[0]
    return unread == 0


def finish(proc: subprocess.Popen[bytes]) -> None:
    """Closes stdin (EOF) and expects a prompt, clean exit."""
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def wait_for_content(path: Path, needle: bytes) -> None:
    found = poll_until(
        CLOCK,
        lambda: path.exists() and needle in path.read_bytes(),
        timeout_s=5,
        interval_s=0.005,
    )
    assert found, f"{needle!r} not in {path}"


def numbered(first: int, count: int) -> bytes:
    """count lines of 100 bytes, numbered from first."""
    return b"".join(b"%08d %s\n" % (i, b"x" * 90) for i in range(first, first + count))


def counter(log_dir: Path) -> int:
    return int((log_dir / "dropped").read_text())


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1))


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def stopped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Holds the writer stopped (SIGSTOP, waiting until it is) for the duration of the block."""
    proc.send_signal(signal.SIGSTOP)
    try:
        assert poll_until(CLOCK, lambda: state(proc.pid) == "T", timeout_s=5, interval_s=0.001)
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


def test_lines_arrive_stamped_in_order_split_and_terminated(tmp_path: Path, spawn: Spawn) -> None:
    log_dir = tmp_path / "a" / "b"  # missing parents are created too
    proc = spawn(log_dir, "-t", "-l", "10")
    current = log_dir / "current"
    send(proc, b"first\n")
    wait_for_content(current, b"first\n")  # an idle app's line is written at once
    send(proc, b"hal")
    assert poll_until(CLOCK, lambda: drained(proc), timeout_s=5, interval_s=0.005)
    send(proc, b"f\n" + b"0123456789\n" + b"a" * 25 + b"\nno newline")
    finish(proc)

    lines = current.read_bytes().split(b"\n")
    assert lines.pop() == b""  # the final partial line got its newline
    bodies = [line[28:] for line in lines]
    assert bodies == [
        b"first",
        b"half",  # one line although it arrived in two reads
        b"0123456789",  # exactly -l bytes: not split
        b"a" * 10,
        b"a" * 10,
        b"a" * 5,
        b"no newline",
    ]
    stamps = []
    for line in lines:
        assert re.match(TS, line), line
        stamps.append(datetime.strptime(line[:27].decode(), "%Y-%m-%dT%H:%M:%S.%fZ"))
    assert stamps == sorted(stamps)
    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs((now - stamps[0]).total_seconds()) < 60
    assert oct(log_dir.stat().st_mode & 0o777) == "0o700"
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_rotation_keeps_a_bounded_gapless_tail(tmp_path: Path, spawn: Spawn) -> None:
    size, keep, line_len = 200_000, 3, 100
    log_dir = tmp_path / "logs"
    proc = spawn(log_dir, "-s", str(size), "-n", str(keep), umask=0)
    assert poll_until(CLOCK, (log_dir / "current").exists, timeout_s=5, interval_s=0.005)
    total_lines, chunk = 52_429, 655  # 5 MB in writes of 64 KiB
    peak = 0
    for first in range(0, total_lines, chunk):
        send(proc, numbered(first, min(chunk, total_lines - first)))
        with stopped(proc):  # a consistent snapshot: the files do not change while we look
            held = sum(
                entry.stat().st_size
                for entry in os.scandir(log_dir)
                if entry.name == "current" or entry.name.startswith("@")
            )
        peak = max(peak, held)
        assert held <= (keep + 1) * size + line_len, f"{held} bytes after line {first}"
    finish(proc)

    archives = sorted(p.name for p in log_dir.iterdir() if p.name.startswith("@"))
    assert len(archives) == keep
    assert all(ARCHIVE.fullmatch(name) for name in archives), archives
    kept = b""
    for name in [*archives, "current"]:
        path = log_dir / name
        assert path.stat().st_size <= size
        assert oct(path.stat().st_mode & 0o777) == "0o600"  # under umask 0 too
        data = path.read_bytes()
        assert data.endswith(b"\n")  # files end at line boundaries
        kept += data
    numbers = [int(line[:8]) for line in kept.splitlines()]
    assert numbers == list(range(numbers[0], total_lines))  # contiguous, ends at the last line
    assert len(kept) > keep * size  # the archives are (nearly) full, not rotated early
    assert peak > keep * size


def test_full_disk_drops_and_counts_without_blocking_input(tmp_path: Path, spawn: Spawn) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if mount.returncode != 0:
        reason = f"cannot mount a tmpfs: {mount.stderr.decode().strip()}"
        print(reason)
        pytest.skip(reason)
    proc: subprocess.Popen[bytes] | None = None
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * 512 * 1024)
        log_dir = mnt / "logs"
        proc = spawn(log_dir, "-t", "-s", "10000000", "-n", "2")
        writer = proc
        fd = stdin_fd(proc)
        os.set_blocking(fd, False)
        # 128-byte lines (with the stamp) would end exactly at tmpfs page boundaries; this first
        # line shifts them so that the disk fills up in the middle of a line.
        send(proc, b"begin\n")
        blocked_s, peak_rss, sent = 0.0, 0, 0

        def pump(count: int) -> None:
            """Sends count numbered lines without ever blocking; times the waits for room."""
            nonlocal blocked_s, peak_rss, sent
            view = memoryview(numbered(sent, count))
            sent += count
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    started = time.monotonic()
                    select.select([], [fd], [], 5)
                    blocked_s += time.monotonic() - started
            peak_rss = max(peak_rss, rss_kib(writer.pid))

        def fill() -> int:
            pump(1000)
            return counter(log_dir)

        # Fill the disk (the writer's current takes the ~0.5 MB left), then keep writing 20 MB.
        assert poll_until(CLOCK, fill, timeout_s=30, interval_s=0.001)
        for _ in range(200):
            pump(1000)
        assert blocked_s < 1.0, f"the writer stalled its input for {blocked_s:.2f} s"
        assert peak_rss < 5 * 1024, f"VmRSS reached {peak_rss} KiB"
        assert counter(log_dir) > 0

        filler.unlink()
        before_free = sent
        pump(1000)
        os.set_blocking(fd, True)
        finish(proc)

        lines = (log_dir / "current").read_bytes().split(b"\n")
        assert lines.pop() == b""
        assert lines.pop(0).endswith(b"Z begin")
        reports = [i for i, line in enumerate(lines) if REPORT.fullmatch(line)]
        assert len(reports) == 1, reports
        (at,) = reports
        match = REPORT.fullmatch(lines[at])
        assert match is not None
        reported = int(match.group(1))
        # The line cut by the disk filling up ends just before the report (the writer started a
        # new line for it); all others are intact, in order, and exactly the reported are missing.
        intact = [NUMBERED.fullmatch(line) for line in lines[:at] + lines[at + 1 :]]
        assert lines[at - 1] and not intact[at - 1], "the disk did not fill up mid-line"
        assert all(intact[: at - 1]) and all(intact[at:]), "a broken line besides the cut one"
        numbers = [int(m.group(1)) for m in intact if m]
        assert numbers == sorted(numbers)
        assert numbers[-1000:] == list(range(before_free, sent))  # all written after freeing
        assert reported == sent - len(numbers) == counter(log_dir)
        assert reported > 200_000
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", str(mnt)], check=True)


def test_sigterm_finishes_what_was_read_and_exits_0(tmp_path: Path, spawn: Spawn) -> None:
    proc = spawn(tmp_path, "-l", "100")
    current = tmp_path / "current"
    send(proc, b"one\n")
    wait_for_content(current, b"one\n")
    os.killpg(proc.pid, signal.SIGHUP)  # as when its session's leader goes away
    proc.send_signal(signal.SIGINT)
    send(proc, b"two\nhalf")
    wait_for_content(current, b"two\n")
    assert poll_until(CLOCK, lambda: drained(proc), timeout_s=5, interval_s=0.005)
    assert proc.poll() is None  # SIGHUP and SIGINT are ignored

    proc.send_signal(signal.SIGTERM)  # while the pipe is still open: no EOF
    assert proc.wait(timeout=5) == 0
    assert current.read_bytes() == b"one\ntwo\nhalf\n"


# Starts a writer as the daemon will (own session, stdin a pipe: here a FIFO), prints its pid and
# exits at once, leaving it orphaned.
STARTER = """
import subprocess, sys
logd, fifo, log_dir = sys.argv[1:]
with open(fifo, "rb") as pipe:
    proc = subprocess.Popen([logd, log_dir], stdin=pipe, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
print(proc.pid)
"""


def test_outlives_the_process_that_started_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    end = os.open(fifo, os.O_RDWR)  # the app's end; O_RDWR does not wait for a reader
    try:
        starter = subprocess.run(
            [sys.executable, "-c", STARTER, str(LOGD), str(fifo), str(tmp_path / "logs")],
            capture_output=True,
            timeout=10,
            check=True,
        )
        pid = int(starter.stdout)
        os.write(end, b"after the starter exited\n")
        wait_for_content(tmp_path / "logs" / "current", b"after the starter exited\n")
    finally:
        os.close(end)  # EOF: the orphan exits
    assert poll_until(CLOCK, lambda: state(pid) in (None, "Z"), timeout_s=5, interval_s=0.005)


def test_restart_continues_the_count_and_a_cut_line(tmp_path: Path, spawn: Spawn) -> None:
    (tmp_path / "dropped").write_text("7\n")
    (tmp_path / "current").write_bytes(b"cut off")
    proc = spawn(tmp_path)
    send(proc, b"new\n")
    finish(proc)
    assert (tmp_path / "current").read_bytes() == b"cut off\nnew\n"
    counter_bytes = (tmp_path / "dropped").read_bytes()
    assert len(counter_bytes) == 32 and counter_bytes.endswith(b"\n")
    assert int(counter_bytes) == 7


def test_a_file_size_limit_drops_instead_of_killing(tmp_path: Path, spawn: Spawn) -> None:
    proc = spawn(tmp_path)
    assert poll_until(CLOCK, (tmp_path / "current").exists, timeout_s=5, interval_s=0.005)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1000, 1000))  # then writes fail: EFBIG
    send(proc, numbered(0, 50))
    finish(proc)  # SIGXFSZ is ignored
    assert (tmp_path / "current").read_bytes() == numbered(0, 10)
    assert counter(tmp_path) == 40


@pytest.mark.parametrize(
    "args",
    [[], ["-s", "0", "DIR"], ["-l", "x", "DIR"], ["-n", "-1", "DIR"], ["-z", "DIR"], ["a", "b"]],
)
def test_usage_errors_exit_111(args: list[str]) -> None:
    done = subprocess.run([str(LOGD), *args], capture_output=True, timeout=10, cwd="/")
    assert done.returncode == 111
    assert b"usage: shipyard-logd" in done.stderr


def test_a_directory_that_cannot_be_made_exits_111(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = subprocess.run(
        [str(LOGD), str(tmp_path / "file" / "logs")], capture_output=True, timeout=10
    )
    assert done.returncode == 111
    assert b"Not a directory" in done.stderr
