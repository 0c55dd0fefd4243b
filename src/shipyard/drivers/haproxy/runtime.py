"""A client for HAProxy's two UNIX sockets: the admin stats socket and the master CLI.

Admin socket: :class:`AdminClient` keeps a small pool of persistent connections in interactive
mode (``prompt``: every answer ends with the ``"\\n> "`` prompt), so a burst of ``add server`` or
a batched ``show stat`` opens no socket. Idle connections are dropped before HAProxy's ``stats
timeout`` would close them, and the edge resets the pool around each reload: an open CLI
connection keeps an old worker alive (and answering with stale state) until it closes. A new
connection checks that it reached the expected worker (``show info`` Pid), because during a
reload the old and the new worker both accept on the same listening socket for a moment.

Master CLI: one command per connection (2.6 answers and closes once it sees the end of input).

The command helpers accept an :class:`AdminClient` or a socket ``Path`` (one connection per
command: what tests use to observe HAProxy independently of the edge's pool). Answers are
parsed by pure ``parse_*`` functions. Every socket or protocol failure becomes an EdgeError.
"""

from __future__ import annotations

import contextlib
import csv
import io
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.clock import Clock
from shipyard.drivers.haproxy.view import DUPLICATE
from shipyard.errors import EdgeError
from shipyard.route.table import ServerState, ServerStats

# srv_admin_state bits (include/haproxy/server-t.h). CMAINT (0x04) only records that the config
# said "disabled"; the effective maintenance mask excludes it.
ADMF_FMAINT = 0x01
ADMF_MAINT = 0x23  # FMAINT | IMAINT | RMAINT
ADMF_DRAIN = 0x18  # FDRAIN | IDRAIN
PROMPT = b"\n> "
PAYLOAD_LIMIT = 500  # entries per ``add map`` payload


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


# -- transport --------------------------------------------------------------------------------


def send(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """Send one command on a new connection and return the whole answer (the server closes)."""
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
        raise _socket_error(socket_path, command, exc) from exc
    return b"".join(chunks).decode(errors="replace")


def _socket_error(path: Path, command: str, exc: BaseException | str) -> EdgeError:
    return EdgeError(
        f"HAProxy socket {path} did not answer {command.split()[0]!r}: {exc}",
        fields={"socket": str(path), "command": command.splitlines()[0]},
    )


class _Conn:
    def __init__(self, sock: socket.socket, generation: int) -> None:
        self.sock = sock
        self.generation = generation
        self.used = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _Reset(Exception):
    """The connection failed before any byte of the answer arrived (safe to retry)."""


class AdminClient:
    """Persistent, thread-safe connections to the admin socket (at most ``pool_size`` idle).

    ``command`` sends one line (or a payload command) and returns the answer without the
    prompt. A connection that fails before answering is replaced and the command retried once;
    any other failure raises EdgeError. ``counts`` tallies commands by their first two words and
    ``connects`` the connections opened (for tests and diagnostics).
    """

    def __init__(
        self,
        path: Path,
        *,
        timeout: float = 5.0,
        pool_size: int = 4,
        max_idle_s: float = 20.0,  # below HAProxy's ``stats timeout 30s``
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.pool_size = pool_size
        self.max_idle_s = max_idle_s
        self.counts: Counter[str] = Counter()
        self.connects = 0
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._expect_pid: int | None = None

    def command(self, line: str, timeout: float | None = None) -> str:
        words = line.split(None, 2)
        with self._lock:
            self.counts[" ".join(words[:2])] += 1
        for attempt in (1, 2):
            conn, reused = self._acquire(line)
            try:
                answer = self._exchange(conn, line, timeout or self.timeout)
            except _Reset as exc:
                conn.close()
                if reused and attempt == 1:
                    continue
                raise _socket_error(self.path, line, str(exc.__cause__ or exc)) from exc
            except (OSError, TimeoutError) as exc:
                conn.close()
                raise _socket_error(self.path, line, exc) from exc
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def reset(self, expect_pid: int | None = None) -> None:
        """Drop every pooled connection (those in use are closed when released); new ones must
        reach worker ``expect_pid`` if given. Called before and after a reload."""
        with self._lock:
            self._generation += 1
            self._expect_pid = expect_pid
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        self.reset()

    def _acquire(self, line: str) -> tuple[_Conn, bool]:
        now = time.monotonic()
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(line), False
            if now - conn.used < self.max_idle_s and not _readable(conn.sock):
                return conn, True
            conn.close()  # idle too long, or HAProxy closed it / sent something unasked

    def _release(self, conn: _Conn) -> None:
        conn.used = time.monotonic()
        with self._lock:
            if conn.generation == self._generation and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, line: str) -> _Conn:
        deadline = time.monotonic() + 2.0
        while True:
            with self._lock:
                generation, expect = self._generation, self._expect_pid
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn = _Conn(sock, generation)
            try:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(b"prompt\n")
                _read_answer(sock)
                with self._lock:
                    self.connects += 1
                if expect is None:
                    return conn
                sock.sendall(b"show info\n")
                pid = parse_info(_read_answer(sock)).get("Pid", "")
            except (OSError, TimeoutError, _Reset) as exc:
                conn.close()
                raise _socket_error(self.path, line, exc) from exc
            if pid == str(expect):
                return conn
            conn.close()
            if time.monotonic() >= deadline:  # someone else reloaded it: follow the new worker
                with self._lock:
                    if self._expect_pid == expect:
                        self._expect_pid = int(pid) if pid.isdigit() else None
                continue
            time.sleep(0.02)  # an old worker that has not stopped listening yet

    @staticmethod
    def _exchange(conn: _Conn, line: str, timeout: float) -> str:
        conn.sock.settimeout(timeout)
        try:
            conn.sock.sendall(line.encode() + b"\n")
        except OSError as exc:
            raise _Reset("send failed") from exc
        return _read_answer(conn.sock)


def _readable(sock: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _read_answer(sock: socket.socket) -> str:
    """Read up to the prompt; strip it and the ``+ `` prompts a payload command echoes."""
    buf = bytearray()
    while not buf.endswith(PROMPT):
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise  # it may still be working on the command: never retried
        except OSError as exc:
            if not buf:
                raise _Reset("connection reset") from exc
            raise
        if not chunk:
            if not buf:
                raise _Reset("connection closed")
            raise OSError("connection closed in the middle of an answer")
        buf += chunk
    text = buf[:-2].decode(errors="replace")
    while text.startswith("+ "):
        text = text[2:]
    return text


Admin = AdminClient | Path


def _send(admin: Admin, command: str, timeout: float = 5.0) -> str:
    if isinstance(admin, AdminClient):
        return admin.command(command, timeout)
    return send(admin, command, timeout)


def arg(value: str) -> str:
    """Escape a CLI argument: ``;`` separates commands and ``\\`` escapes (values never hold
    spaces or newlines: validate_table sees to it)."""
    if any(c.isspace() for c in value):
        raise EdgeError(f"value {value!r} cannot be sent on the HAProxy CLI")
    return value.replace("\\", "\\\\").replace(";", "\\;")


def _expect(answer: str, command: str, *accepted: str) -> None:
    text = answer.strip()
    if text in accepted or any(text.startswith(a) for a in accepted if a):
        return
    raise EdgeError(f"HAProxy refused {command!r}: {text}", fields={"command": command})


# -- parsers (pure) ---------------------------------------------------------------------------


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


# -- admin socket commands --------------------------------------------------------------------


def show_info(admin: Admin, timeout: float = 5.0) -> dict[str, str]:
    return parse_info(_send(admin, "show info", timeout))


def worker_pid(admin: Admin, timeout: float = 5.0) -> int:
    pid = show_info(admin, timeout).get("Pid", "")
    if not pid.isdigit():
        raise EdgeError("HAProxy 'show info' has no Pid")
    return int(pid)


def show_stat(
    admin: Admin, proxy: str | None = None, timeout: float = 5.0
) -> dict[tuple[str, str], ServerStats]:
    """Server rows only (``show stat <proxy|-1> 4 -1``): all backends in one answer, or one."""
    return parse_stat(_send(admin, f"show stat {proxy or -1} 4 -1", timeout))


def servers_state(
    admin: Admin, backend: str | None = None, timeout: float = 5.0
) -> dict[str, dict[str, RuntimeServer]]:
    """``show servers state [backend]``: backend -> server -> row (raises if unknown)."""
    command = f"show servers state {backend}" if backend else "show servers state"
    return parse_servers_state(_send(admin, command, timeout), f" {backend}" if backend else "")


def show_servers_state(
    admin: Admin, backend: str, timeout: float = 5.0
) -> dict[str, RuntimeServer]:
    """The servers the running worker has in ``backend`` (raises EdgeError if unknown)."""
    return servers_state(admin, backend, timeout).get(backend, {})


def dump_servers_state(admin: Admin, timeout: float = 5.0) -> str:
    """``show servers state`` for all backends, in the format server-state-file expects."""
    text = _send(admin, "show servers state", timeout)
    if not text.startswith("1\n"):
        raise EdgeError(f"unexpected 'show servers state' answer: {text[:200]!r}")
    return text


def add_server(admin: Admin, backend: str, server: str, args: str, timeout: float = 5.0) -> None:
    """Add a dynamic server; HAProxy creates it in maintenance (FMAINT)."""
    command = f"add server {backend}/{server} {args}"
    _expect(_send(admin, command, timeout), command, "New server registered")


def set_server_state(
    admin: Admin, backend: str, server: str, state: ServerState, timeout: float = 5.0
) -> None:
    command = f"set server {backend}/{server} state {state}"
    _expect(_send(admin, command, timeout), command, "")


def set_weight(admin: Admin, backend: str, server: str, weight: int, timeout: float = 5.0) -> None:
    command = f"set server {backend}/{server} weight {weight}"
    _expect(_send(admin, command, timeout), command, "")


def enable_health(admin: Admin, backend: str, server: str, timeout: float = 5.0) -> None:
    command = f"enable health {backend}/{server}"
    _expect(_send(admin, command, timeout), command, "")


def del_servers(
    admin: Admin,
    servers: Iterable[tuple[str, str]],
    clock: Clock,
    *,
    grace: float = 2.0,
    timeout: float = 10.0,
) -> None:
    """Remove servers: maint (no new requests), let in-flight ones finish for up to ``grace``
    seconds (one ``show stat`` per poll for all of them), cut what is left (``shutdown
    sessions``), then retry ``del server`` until HAProxy agrees each has no connection left,
    or ``timeout`` passes."""
    pending = list(dict.fromkeys(servers))
    if not pending:
        return
    for backend, server in pending:
        set_server_state(admin, backend, server, "maint")
    deadline = clock.monotonic() + grace
    busy = pending
    while busy and clock.monotonic() < deadline:
        proxies = {b for b, _ in busy}
        stats = show_stat(admin, next(iter(proxies)) if len(proxies) == 1 else None)
        busy = [ref for ref in busy if ref in stats and not stats[ref].idle]
        if busy:
            clock.sleep(0.05)
    for backend, server in busy:
        _send(admin, f"shutdown sessions server {backend}/{server}")
    deadline = clock.monotonic() + timeout
    for backend, server in pending:
        command = f"del server {backend}/{server}"
        while True:
            answer = _send(admin, command).strip()
            if answer.startswith("Server deleted") or answer.startswith("No such server"):
                break
            if clock.monotonic() >= deadline:
                raise EdgeError(
                    f"HAProxy refused {command!r}: {answer}", fields={"command": command}
                )
            clock.sleep(0.1)


def del_server(
    admin: Admin, backend: str, server: str, clock: Clock, *, grace: float = 2.0
) -> None:
    del_servers(admin, [(backend, server)], clock, grace=grace)


def show_map(admin: Admin, map_file: Path, timeout: float = 5.0) -> dict[str, str]:
    """The map's entries; a key present more than once maps to view.DUPLICATE."""
    out: dict[str, str] = {}
    for key, value in parse_map(_send(admin, f"show map {map_file}", timeout), str(map_file)):
        out[key] = DUPLICATE if key in out else value
    return out


def get_map(admin: Admin, map_file: Path, key: str, timeout: float = 5.0) -> str | None:
    return parse_get_map(_send(admin, f"get map {map_file} {arg(key)}", timeout))


def add_map(admin: Admin, map_file: Path, entries: list[tuple[str, str]]) -> None:
    """Add entries (new keys): one command, or payloads of up to PAYLOAD_LIMIT entries."""
    if len(entries) == 1:
        key, value = entries[0]
        command = f"add map {map_file} {arg(key)} {arg(value)}"
        _expect(_send(admin, command), command, "")
        return
    for start in range(0, len(entries), PAYLOAD_LIMIT):
        chunk = entries[start : start + PAYLOAD_LIMIT]
        for key, value in chunk:  # a payload line is "key value": no whitespace inside
            arg(key)
            arg(value)
        body = "".join(f"{key} {value}\n" for key, value in chunk)
        command = f"add map {map_file} <<\n{body}"
        _expect(_send(admin, command), f"add map {map_file} <<", "")


def set_map(admin: Admin, map_file: Path, key: str, value: str) -> None:
    command = f"set map {map_file} {arg(key)} {arg(value)}"
    _expect(_send(admin, command), command, "")


def del_map(admin: Admin, map_file: Path, key: str) -> None:
    command = f"del map {map_file} {arg(key)}"
    _expect(_send(admin, command), command, "", "Key not found")


# -- master CLI -------------------------------------------------------------------------------


def show_proc(master: Path, timeout: float = 5.0) -> ProcInfo:
    try:
        return parse_show_proc(send(master, "show proc", timeout))
    except EdgeError as exc:
        raise EdgeError(f"{exc.message} (master CLI {master})", fields=exc.fields) from exc


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
