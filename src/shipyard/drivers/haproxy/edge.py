"""HAProxyEdge: the Router backed by Shipyard's own HAProxy, in master-worker mode.

HAProxy outlives the daemon: it is started daemonized (``-W -D``) with everything under
``opts.dir``, and a new daemon adopts it (pidfile + /proc + master CLI) instead of starting
another. ``apply`` writes the config file first (validated with ``haproxy -c``, replaced
atomically), then either reloads through the master CLI (anything but servers changed) or
changes only servers through the runtime API, and finally verifies ``show servers state``
against the table, so the file and the running proxy always agree.

``haproxy.cfg.loaded`` records the config (server lines removed) the running worker loaded; it
is written only after a successful start or reload, so a daemon that died between writing the
file and reloading still reloads after adoption.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from shipyard.clock import Clock, SystemClock
from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.config import (
    EdgeOptions,
    backend_name,
    render_config,
    server_args,
    strip_servers,
)
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server, ServerStats

EMPTY_STATE = "1\n"


class HAProxyEdge:
    """Implements the Router protocol. Thread-safe: applies are serialised."""

    def __init__(
        self,
        opts: EdgeOptions,
        *,
        haproxy_bin: str = "haproxy",
        clock: Clock | None = None,
        reload_timeout: float = 20.0,
        del_grace: float = 2.0,
    ) -> None:
        self._opts = opts
        self._bin = haproxy_bin
        self._clock: Clock = clock or SystemClock()
        self._reload_timeout = reload_timeout
        self._del_grace = del_grace
        self._lock = threading.RLock()

    @property
    def opts(self) -> EdgeOptions:
        return self._opts

    @property
    def _marker(self) -> Path:
        return self._opts.dir / "haproxy.cfg.loaded"

    # -- lifecycle ---------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The running master's pid if it is ours (pidfile, /proc cmdline), else None."""
        return master_pid_from(self._opts.pidfile, self._opts.config_path)

    def is_running(self) -> bool:
        pid = self.master_pid()
        if pid is None:
            return False
        try:
            return runtime.show_proc(self._opts.master_socket).master_pid == pid
        except EdgeError:
            return False

    def ensure_running(self, table: RoutingTable) -> None:
        """Adopt the HAProxy already running on ``opts.dir`` or start one, then apply ``table``."""
        with self._lock:
            if not self.is_running():
                self._start(table)
            self.apply(table)

    def _start(self, table: RoutingTable) -> None:
        opts = self._opts
        opts.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._cleanup_files()
        text = render_config(table, opts)
        if not opts.state_file.exists():
            write_atomic(opts.state_file, EMPTY_STATE)
        self._validate(text)
        write_atomic(opts.config_path, text)
        argv = [
            self._bin, "-W", "-D",
            "-S", f"{opts.master_socket},mode,600",
            "-p", str(opts.pidfile),
            "-f", str(opts.config_path),
        ]  # fmt: skip
        with opts.log_file.open("ab") as log:
            try:
                proc = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, timeout=30, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EdgeError(f"could not start HAProxy ({self._bin}): {exc}") from exc
        if proc.returncode != 0:
            raise EdgeError(f"HAProxy failed to start: {self._log_tail()}")
        self._wait_ready(old_worker=None)
        write_atomic(self._marker, strip_servers(text))

    def stop(self, timeout: float = 10.0) -> None:
        """Soft-stop (SIGUSR1: finish in-flight requests), then SIGTERM, then SIGKILL."""
        with self._lock:
            pid = self.master_pid()
            if pid is not None:
                pids = [pid, *self._worker_pids()]
                for sig, wait in (
                    (signal.SIGUSR1, timeout),
                    (signal.SIGTERM, 2.0),
                    (signal.SIGKILL, 2.0),
                ):
                    signal_all(pids, sig)
                    if self._wait_gone(pids, wait):
                        break
            self._cleanup_files()

    def _worker_pids(self) -> list[int]:
        try:
            info = runtime.show_proc(self._opts.master_socket)
        except EdgeError:
            return []
        return [*info.workers, *info.old_workers]

    def _wait_gone(self, pids: list[int], timeout: float) -> bool:
        deadline = self._clock.monotonic() + timeout
        while any(alive(p) for p in pids):
            if self._clock.monotonic() >= deadline:
                return False
            self._clock.sleep(0.05)
        return True

    def _cleanup_files(self) -> None:
        for path in (self._opts.admin_socket, self._opts.master_socket, self._opts.pidfile):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- apply -------------------------------------------------------------------------------

    def apply(self, table: RoutingTable) -> None:
        """Bring the config file and the running proxy to ``table`` (see Router)."""
        with self._lock:
            if not self.is_running():
                raise EdgeError("HAProxy is not running; call ensure_running first")
            text = render_config(table, self._opts)
            self._validate(text)
            skeleton = strip_servers(text)
            previous = read_text(self._opts.config_path)
            write_atomic(self._opts.config_path, text)
            if read_text(self._marker) != skeleton:
                try:
                    self._reload()
                except EdgeError:
                    if previous is not None:  # the old worker still serves the old file
                        write_atomic(self._opts.config_path, previous)
                    raise
                write_atomic(self._marker, skeleton)
            self._sync_servers(table)
            if not self._matches(table):
                self._sync_servers(table)
                if not self._matches(table):
                    raise EdgeError("HAProxy runtime state does not match the routing table")

    def check(self, table: RoutingTable) -> None:
        """Raise EdgeError if ``table`` could not be applied (names, hosts, paths, and the
        rendered config through `haproxy -c`); changes nothing."""
        self._opts.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._validate(render_config(table, self._opts))

    def _validate(self, text: str) -> None:
        tmp = self._opts.dir / f".haproxy.cfg.check.{os.getpid()}.{threading.get_ident()}"
        tmp.write_text(text)
        try:
            proc = subprocess.run(
                [self._bin, "-c", "-q", "-f", str(tmp)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EdgeError(f"could not run {self._bin} -c: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip().replace(str(tmp), "haproxy.cfg")
            raise EdgeError(f"HAProxy rejected the generated config: {message}")

    def _reload(self) -> None:
        opts = self._opts
        old = runtime.worker_pid(opts.admin_socket)
        failed_before = runtime.show_proc(opts.master_socket).reloads_failed
        try:
            state = runtime.dump_servers_state(opts.admin_socket)
        except EdgeError:
            state = EMPTY_STATE  # config alone is still correct; verify fixes the rest
        write_atomic(opts.state_file, state)
        with contextlib.suppress(EdgeError):  # 2.6 may drop the CLI connection on re-exec
            runtime.reload(opts.master_socket)
        self._wait_ready(old_worker=old, failed_before=failed_before)

    def _wait_ready(self, old_worker: int | None, failed_before: int = 0) -> None:
        """Wait until the master lists a new current worker and it answers on admin.sock."""
        opts = self._opts
        deadline = self._clock.monotonic() + self._reload_timeout
        last = "no answer yet"
        while self._clock.monotonic() < deadline:
            try:
                proc = runtime.show_proc(opts.master_socket, timeout=2.0)
                if proc.reloads_failed > failed_before:
                    raise EdgeError(
                        "HAProxy could not load the new config (a listener port may be in use);"
                        " the previous config keeps serving"
                    )
                new = [p for p in proc.workers if p != old_worker]
                if new and runtime.worker_pid(opts.admin_socket, timeout=2.0) in new:
                    return
                last = f"workers {proc.workers}"
            except EdgeError as exc:
                if "could not load" in exc.message:
                    raise
                last = exc.message
            self._clock.sleep(0.05)
        raise EdgeError(f"HAProxy worker not ready after {self._reload_timeout}s ({last})")

    def _sync_servers(self, table: RoutingTable) -> None:
        for backend in table.backends:
            self._sync_backend(backend)

    def _sync_backend(self, backend: Backend) -> None:
        """Add first, then change states, then delete: capacity never dips during a swap."""
        admin, be = self._opts.admin_socket, backend_name(backend.name)
        running = runtime.show_servers_state(admin, be)
        wanted = {s.name: s for s in backend.servers}
        keep = {
            name
            for name, cur in running.items()
            if name in wanted and (cur.addr, cur.port) == (wanted[name].address, wanted[name].port)
        }
        for name, target in wanted.items():
            if name not in running:
                self._add(backend, target)
            elif name in keep and not running[name].in_state(target.state):
                self._set_state(be, target)
        for name in running.keys() - keep:
            runtime.del_server(admin, be, name, self._clock, grace=self._del_grace)
            if name in wanted:  # same name, new address: re-create it
                self._add(backend, wanted[name])

    def _add(self, backend: Backend, server: Server) -> None:
        admin, be = self._opts.admin_socket, backend_name(backend.name)
        runtime.add_server(admin, be, server.name, server_args(backend, server))
        runtime.enable_health(admin, be, server.name)
        self._set_state(be, server)

    def _set_state(self, be: str, server: Server) -> None:
        admin = self._opts.admin_socket
        runtime.set_server_state(admin, be, server.name, server.state)
        if server.state == "ready":
            runtime.set_weight(admin, be, server.name, 1)

    def _matches(self, table: RoutingTable) -> bool:
        for backend in table.backends:
            running = runtime.show_servers_state(
                self._opts.admin_socket, backend_name(backend.name)
            )
            if set(running) != {s.name for s in backend.servers}:
                return False
            for server in backend.servers:
                current = running[server.name]
                if (current.addr, current.port) != (server.address, server.port):
                    return False
                if not current.in_state(server.state):
                    return False
        return True

    # -- observation -------------------------------------------------------------------------

    def server_stats(self, backend: str, server: str) -> ServerStats | None:
        stats = runtime.show_stat(self._opts.admin_socket)
        return stats.get((backend_name(backend), server))

    def old_workers(self) -> int:
        """Workers left by a reload and still finishing connections (bounded by hard-stop)."""
        return len(runtime.show_proc(self._opts.master_socket).old_workers)

    def _log_tail(self, limit: int = 2000) -> str:
        return (read_text(self._opts.log_file) or "")[-limit:].strip()


# -- process and file helpers ---------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (HAProxy's master is reparented to init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def master_pid_from(pidfile: Path, config: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is HAProxy running ``config``."""
    text = (read_text(pidfile) or "").strip()
    if not text.isdigit() or not alive(int(text)):
        return None
    try:
        argv = Path(f"/proc/{text}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    names = [os.fsdecode(a) for a in argv]
    if not names or "haproxy" not in Path(names[0]).name or str(config) not in names:
        return None
    return int(text)


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
