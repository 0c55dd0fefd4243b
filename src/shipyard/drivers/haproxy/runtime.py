"""A small client for HAProxy's two UNIX sockets: the admin stats socket and the master CLI.

One command per connection. The client half-closes its side after sending: the 2.6 master CLI
only answers and closes once it sees the end of the input (the stats socket does not care).
Every socket or protocol failure becomes an EdgeError.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.clock import Clock
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
        maint = bool(self.admin_state & ADMF_MAINT)
        drain = bool(self.admin_state & ADMF_DRAIN)
        if state == "maint":
            return maint
        if state == "drain":
            return not maint and drain
        return not maint and not drain and self.weight > 0


@dataclass(frozen=True)
class ProcInfo:
    """The master CLI's ``show proc``: the current worker(s) and the old ones still draining."""

    master_pid: int
    reloads_failed: int
    workers: tuple[int, ...] = field(default_factory=tuple)
    old_workers: tuple[int, ...] = field(default_factory=tuple)


def send(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """Send one command and return the whole answer (the server closes when done)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except (OSError, TimeoutError) as exc:
        raise EdgeError(
            f"HAProxy socket {socket_path} did not answer {command.split()[0]!r}: {exc}",
            fields={"socket": str(socket_path), "command": command},
        ) from exc
    return b"".join(chunks).decode(errors="replace")


def _expect(answer: str, command: str, *accepted: str) -> None:
    text = answer.strip()
    if text in accepted or any(text.startswith(a) for a in accepted if a):
        return
    raise EdgeError(f"HAProxy refused {command!r}: {text}", fields={"command": command})


def show_info(admin: Path, timeout: float = 5.0) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in send(admin, "show info", timeout).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def worker_pid(admin: Path, timeout: float = 5.0) -> int:
    pid = show_info(admin, timeout).get("Pid", "")
    if not pid.isdigit():
        raise EdgeError(f"HAProxy 'show info' on {admin} has no Pid")
    return int(pid)


def show_stat(admin: Path, timeout: float = 5.0) -> dict[tuple[str, str], ServerStats]:
    """Per (proxy, server) status, sessions in flight and queued requests."""
    text = send(admin, "show stat", timeout)
    if not text.startswith("# "):
        raise EdgeError(f"unexpected 'show stat' answer: {text[:200]!r}")
    stats: dict[tuple[str, str], ServerStats] = {}
    for row in csv.DictReader(io.StringIO(text[2:])):
        stats[(row["pxname"], row["svname"])] = ServerStats(
            status=row["status"], scur=_int(row["scur"]), qcur=_int(row["qcur"])
        )
    return stats


def show_servers_state(admin: Path, backend: str, timeout: float = 5.0) -> dict[str, RuntimeServer]:
    """The servers the running worker has in ``backend`` (raises EdgeError if unknown)."""
    text = send(admin, f"show servers state {backend}", timeout)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("# "):
        raise EdgeError(f"HAProxy 'show servers state {backend}': {text.strip()[:200]}")
    header = lines[1][2:].split()
    servers: dict[str, RuntimeServer] = {}
    for line in lines[2:]:
        row = dict(zip(header, line.split(), strict=False))
        servers[row["srv_name"]] = RuntimeServer(
            name=row["srv_name"],
            addr=row["srv_addr"],
            port=_int(row["srv_port"]),
            op_state=_int(row["srv_op_state"]),
            admin_state=_int(row["srv_admin_state"]),
            weight=_int(row["srv_uweight"]),
        )
    return servers


def dump_servers_state(admin: Path, timeout: float = 5.0) -> str:
    """``show servers state`` for all backends, in the format server-state-file expects."""
    text = send(admin, "show servers state", timeout)
    if not text.startswith("1\n"):
        raise EdgeError(f"unexpected 'show servers state' answer: {text[:200]!r}")
    return text


def add_server(admin: Path, backend: str, server: str, args: str, timeout: float = 5.0) -> None:
    """Add a dynamic server; HAProxy creates it in maintenance (FMAINT)."""
    command = f"add server {backend}/{server} {args}"
    _expect(send(admin, command, timeout), command, "New server registered")


def set_server_state(
    admin: Path, backend: str, server: str, state: ServerState, timeout: float = 5.0
) -> None:
    command = f"set server {backend}/{server} state {state}"
    _expect(send(admin, command, timeout), command, "")


def set_weight(admin: Path, backend: str, server: str, weight: int, timeout: float = 5.0) -> None:
    command = f"set server {backend}/{server} weight {weight}"
    _expect(send(admin, command, timeout), command, "")


def enable_health(admin: Path, backend: str, server: str, timeout: float = 5.0) -> None:
    command = f"enable health {backend}/{server}"
    _expect(send(admin, command, timeout), command, "")


def del_server(
    admin: Path,
    backend: str,
    server: str,
    clock: Clock,
    *,
    grace: float = 2.0,
    timeout: float = 10.0,
) -> None:
    """Remove a server: maint (no new requests), let in-flight ones finish for up to ``grace``
    seconds, cut what is left (``shutdown sessions``), then retry ``del server`` until HAProxy
    agrees the server has no connection left, or ``timeout`` passes."""
    set_server_state(admin, backend, server, "maint")
    deadline = clock.monotonic() + grace
    while clock.monotonic() < deadline:
        stats = show_stat(admin).get((backend, server))
        if stats is None or stats.idle:
            break
        clock.sleep(0.05)
    send(admin, f"shutdown sessions server {backend}/{server}")
    command = f"del server {backend}/{server}"
    deadline = clock.monotonic() + timeout
    while True:
        answer = send(admin, command).strip()
        if answer.startswith("Server deleted") or answer.startswith("No such server"):
            return
        if clock.monotonic() >= deadline:
            raise EdgeError(f"HAProxy refused {command!r}: {answer}", fields={"command": command})
        clock.sleep(0.1)


def show_proc(master: Path, timeout: float = 5.0) -> ProcInfo:
    """Parse the master CLI's ``show proc`` (2.6 layout: master line, then sections)."""
    text = send(master, "show proc", timeout)
    master_pid, failed = 0, 0
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
        elif cols[1] == "worker":
            (old if section.startswith("old") else workers).append(int(cols[0]))
    if master_pid == 0:
        raise EdgeError(f"unexpected 'show proc' answer from {master}: {text.strip()[:200]}")
    return ProcInfo(master_pid, failed, tuple(workers), tuple(old))


def reload(master: Path, timeout: float = 5.0) -> None:
    """Ask the master to re-exec with the config file. 2.6 closes the CLI without an answer."""
    send(master, "reload", timeout)


def _failed_reloads(line: str) -> int:
    _, sep, rest = line.partition("[failed:")
    digits = rest.split("]")[0].strip() if sep else ""
    return int(digits) if digits.isdigit() else 0


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
