"""The transport to HAProxy's two UNIX sockets: the admin stats socket and the master CLI.

Admin socket: :class:`AdminClient` keeps a small pool of persistent connections in interactive
mode (``prompt``: every answer ends with the ``"\\n> "`` prompt), so a burst of ``add server`` or
a batched ``show stat`` opens no socket. Idle connections are dropped before HAProxy's ``stats
timeout`` would close them, and the edge resets the pool around each reload: an open CLI
connection keeps an old worker alive (and answering with stale state) until it closes. A new
connection checks that it reached the expected worker (``show info`` Pid), because during a
reload the old and the new worker both accept on the same listening socket for a moment.

Master CLI: one command per connection (2.6 answers and closes once it sees the end of input):
:func:`send`, which also serves the admin socket when no pool is wanted.

Every socket or protocol failure becomes an EdgeError.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from shipyard.drivers.haproxy.parse import parse_info
from shipyard.errors import EdgeError

PROMPT = b"\n> "


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
