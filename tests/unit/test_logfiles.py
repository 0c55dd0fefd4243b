"""Reading log directories: the last lines across rotated files, following across a rotation
without losing or repeating a line (the writer's own behaviour is in test_logd.py)."""

from __future__ import annotations

import os
from pathlib import Path

from shipyard.drivers.local.logfiles import Follower, dropped_lines, log_bytes, log_files, tail


def _write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def _rotate(log: Path, name: str) -> None:
    os.rename(log / "current", log / name)  # what shipyard-logd does


def test_tail_reads_back_through_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    _write(log / "current", "1", "2", "3")
    _rotate(log, "@20261202T000000.000001Z.s")
    _write(log / "current", "4", "5")
    _rotate(log, "@20261202T000000.000002Z.s")
    _write(log / "current", "6")
    assert [p.name for p in log_files(log)][-1] == "current"
    assert tail(log, 4) == ["3", "4", "5", "6"]
    assert tail(log, 100) == ["1", "2", "3", "4", "5", "6"]
    assert log_bytes(log) == 12 and dropped_lines(log) == 0
    (log / "dropped").write_text("17" + " " * 29 + "\n")
    assert dropped_lines(log) == 17


def test_a_plain_file_is_a_log_too(tmp_path: Path) -> None:
    _write(tmp_path / "old.log", "a", "b")
    assert tail(tmp_path / "old.log", 1) == ["b"] and tail(tmp_path / "missing", 5) == []


def test_follow_continues_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    _write(log / "current", "1", "2")
    follower = Follower(log)
    assert follower.last(1) == ["2"]
    with (log / "current").open("a") as f:
        f.write("3\n4")  # "4" is not complete yet
    assert follower.read() == ["3"]
    with (log / "current").open("a") as f:
        f.write("\n5\n")
    _rotate(log, "@20261202T000000.000001Z.s")  # rotated before the follower looked again
    _write(log / "current", "6")
    assert follower.read() == ["4", "5", "6"]
    assert follower.read() == []


def test_a_follower_that_is_behind_keeps_the_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    follower = Follower(log)
    assert follower.last(1) == []
    _write(log / "current", *(f"A{i}" for i in range(4)))
    _rotate(log, "@20261202T000000.000001Z.s")
    _write(log / "current", *(f"B{i}" for i in range(4)))
    seen: list[str] = []
    while chunk := follower.read(limit=6):  # three lines per read: it falls behind
        seen += chunk
    assert seen == ["A0", "A1", "A2", "A3", "B0", "B1", "B2", "B3"]
