"""Answers of HAProxy's admin socket and master CLI, parsed. Pure: no I/O.

The rows they become (:class:`RuntimeServer`, :class:`ProcInfo`) are what the command helpers
in runtime.py return; a malformed answer raises EdgeError.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from shipyard.errors import EdgeError
from shipyard.route.table import ServerState, ServerStats

# srv_admin_state bits (include/haproxy/server-t.h). CMAINT (0x04) only records that the config
# said "disabled"; the effective maintenance mask excludes it.
ADMF_FMAINT = 0x01
ADMF_MAINT = 0x23  # FMAINT | IMAINT | RMAINT
ADMF_DRAIN = 0x18  # FDRAIN | IDRAIN


@dataclass(frozen=True)
class RuntimeServer:
    """One row of ``show servers state``."""

    name: str
    addr: str
    port: int
    op_state: int  # 0 stopped, 1 starting, 2 running, 3 stopping
    admin_state: int
    weight: int  # user weight

    def in_state(self, state: ServerState) -> bool:
        return self.state() == state

    def state(self) -> str:
        """``ready``, ``drain`` or ``maint`` as the table means them; else ``other``."""
        if self.admin_state & ADMF_MAINT:
            return "maint"
        if self.admin_state & ADMF_DRAIN:
            return "drain"
        return "ready" if self.weight > 0 else "other"


@dataclass(frozen=True)
class ProcInfo:
    """The master CLI's ``show proc``: the current worker(s) and the old ones still draining."""

    master_pid: int
    reloads_failed: int
    workers: tuple[int, ...] = field(default_factory=tuple)
    old_workers: tuple[int, ...] = field(default_factory=tuple)
    reloads: int = 0  # reloads of this master since it started, failed ones included


def parse_info(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def parse_stat(text: str) -> dict[tuple[str, str], ServerStats]:
    """``show stat`` CSV -> (proxy, server) -> status, sessions in flight, queued requests."""
    if not text.startswith("# "):
        raise EdgeError(f"unexpected 'show stat' answer: {text[:200]!r}")
    stats: dict[tuple[str, str], ServerStats] = {}
    for row in csv.DictReader(io.StringIO(text[2:])):
        if row.get("pxname") and row.get("svname"):
            stats[(row["pxname"], row["svname"])] = ServerStats(
                status=row["status"], scur=_int(row["scur"]), qcur=_int(row["qcur"])
            )
    return stats


def parse_servers_state(text: str, what: str = "") -> dict[str, dict[str, RuntimeServer]]:
    """``show servers state`` -> backend -> server name -> row."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("# "):
        raise EdgeError(f"HAProxy 'show servers state{what}': {text.strip()[:200]}")
    header = lines[1][2:].split()
    backends: dict[str, dict[str, RuntimeServer]] = {}
    for line in lines[2:]:
        row = dict(zip(header, line.split(), strict=False))
        backends.setdefault(row["be_name"], {})[row["srv_name"]] = RuntimeServer(
            name=row["srv_name"],
            addr=row["srv_addr"],
            port=_int(row["srv_port"]),
            op_state=_int(row["srv_op_state"]),
            admin_state=_int(row["srv_admin_state"]),
            weight=_int(row["srv_uweight"]),
        )
    return backends


def parse_map(text: str, what: str) -> list[tuple[str, str]]:
    """``show map <file>`` lines ``<ref> <key> <value>`` -> (key, value) in map order."""
    entries: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("0x"):
            raise EdgeError(f"HAProxy 'show map {what}': {text.strip()[:200]}")
        entries.append((parts[1], parts[2] if len(parts) > 2 else ""))
    return entries


def parse_get_map(text: str) -> str | None:
    """``get map <file> <key>`` -> the value found, or None."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if "found=no" in first:
        return None
    marker = ', value="'
    if "found=yes" not in first or marker not in first:
        raise EdgeError(f"unexpected 'get map' answer: {text.strip()[:200]!r}")
    return first.split(marker, 1)[1].split('", type=', 1)[0]


def parse_show_proc(text: str) -> ProcInfo:
    """The master CLI's ``show proc`` (2.6 layout: master line, then sections)."""
    master_pid, failed, reloads = 0, 0, 0
    section = "master"
    workers: list[int] = []
    old: list[int] = []
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ").strip() or section
            continue
        cols = line.split()
        if len(cols) < 2 or not cols[0].isdigit():
            continue
        if cols[1] == "master":
            master_pid = int(cols[0])
            failed = _failed_reloads(line)
            reloads = _int(cols[2]) if len(cols) > 2 else 0
        elif cols[1] == "worker":
            (old if section.startswith("old") else workers).append(int(cols[0]))
    if master_pid == 0:
        raise EdgeError(f"unexpected 'show proc' answer: {text.strip()[:200]}")
    return ProcInfo(master_pid, failed, tuple(workers), tuple(old), reloads)


def _failed_reloads(line: str) -> int:
    _, sep, rest = line.partition("[failed:")
    digits = rest.split("]")[0].strip() if sep else ""
    return int(digits) if digits.isdigit() else 0


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
