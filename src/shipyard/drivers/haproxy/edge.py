"""HAProxyEdge: the Router backed by Shipyard's own HAProxy, in master-worker mode.

HAProxy outlives the daemon: it is started daemonized (``-W -D``) with everything under
``opts.dir``, and a new daemon adopts it (pidfile + /proc + master CLI) instead of starting
another.

Files in ``opts.dir``, always written before the runtime change they describe (atomically,
each), so that a reload (which re-reads them) never forgets anything:

- ``haproxy.cfg``: pool slots, bound internal ports, and the servers of every slot;
- ``hosts.map``, ``ports.map``, ``health.map``, ``checkhost.map`` (see view.py);
- ``layout.json``: pool sizes, bound ports and the service -> slot assignment (layout.py);
- ``haproxy.cfg.loaded``: the config (server lines removed) the running worker loaded, written
  only after a successful start or reload, so a daemon that died between writing the file and
  reloading still reloads after adoption;
- ``server-state``: dumped before each reload so server states survive it.

``apply`` changes at runtime whatever HAProxy 2.6 can change at runtime: servers (``add/del
server``, states, addresses), host and port routing (adding or removing a service, a domain,
moving a service between pools), health check paths and Host headers (``add/set/del map``).
What still needs a reload (hitless: ``expose-fd listeners``; one reload tops every pool and the
port region up again, see layout.compact), because 2.6 cannot create backends or listeners:

- a pool without a spare slot (by default 16 spare, or 25 % of the pool, whichever is more);
- an internal port outside the bound ranges: above the port region's headroom, or any new port
  when no port base is configured (ports that stop being used stay bound until a reload);
- other options (public bind address/port, maxconn, directory) and the first start; adopting a
  proxy started with a config of an older layout.

Apply is incremental: the runtime state of the last successful apply is kept in memory and only
the difference is sent and verified; after adoption, a reload, a restart of HAProxy or any
error, the next apply reads the whole runtime state (one ``show servers state``, one ``show
map`` per map) and repairs it (a full sync).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from shipyard.clock import Clock, SystemClock
from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.config import (
    HOLD_LUA,
    EdgeOptions,
    render_config,
    render_maps,
    server_args,
    strip_servers,
    validate_options,
    validate_table,
)
from shipyard.drivers.haproxy.layout import (
    Layout,
    compact,
    initial_layout,
    parse_slot,
    plan_layout,
)
from shipyard.drivers.haproxy.runtime import AdminClient
from shipyard.drivers.haproxy.view import (
    MAPS,
    Current,
    Desired,
    MapName,
    MapOp,
    Observed,
    ServerRef,
    SyncPlan,
    as_current,
    desired,
    mismatches,
    plan_sync,
)
from shipyard.errors import EdgeError
from shipyard.route.table import RoutingTable, Server, ServerStats

EMPTY_STATE = "1\n"
VERIFY_ONE_BY_ONE = 16  # above this many touched slots/keys, verify with one full read
_BIND = re.compile(r"^    bind 127\.0\.0\.1:(\d+)(?:-(\d+))?$", re.MULTILINE)
_CHECK_PREFIX = re.compile(r"^\[(ALERT|WARNING)\]\s*\(\d+\)\s*:\s*(?:config\s*:\s*)?")
_CHECK_NOISE = ("Error(s) found in configuration file", "Fatal errors found in configuration")


class HAProxyEdge:
    """Implements the Router protocol. Thread-safe: applies are serialised; observation
    (stats, reloads, old workers) does not wait for an apply."""

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
        self._admin = AdminClient(opts.admin_socket)
        self._layout: Layout | None = None  # loaded from layout.json on first use
        self._loaded: str | None = None  # cache of haproxy.cfg.loaded
        self._last: Current | None = None  # the runtime state after the last successful apply
        self._last_proc: tuple[int, int] | None = None  # (master pid, reloads) at that time
        self._last_table: RoutingTable | None = None  # the table of that apply
        self._written: dict[Path, str] = {}

    @property
    def opts(self) -> EdgeOptions:
        return self._opts

    @property
    def admin(self) -> AdminClient:
        """The admin socket client (its ``counts`` show which commands were sent)."""
        return self._admin

    @property
    def _marker(self) -> Path:
        return self._opts.dir / "haproxy.cfg.loaded"

    def layout(self) -> Layout:
        """The current slot assignment, pool sizes and bound ports (as persisted)."""
        if self._layout is None:
            self._layout = self._read_layout()
        return self._layout

    # -- lifecycle ---------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The running master's pid if it is ours (pidfile, /proc cmdline), else None."""
        return master_pid_from(self._opts.pidfile, self._opts.config_path)

    def is_running(self) -> bool:
        """True if our HAProxy master runs and answers on its CLI. One master CLI command."""
        return self._running() is not None

    def _running(self) -> runtime.ProcInfo | None:
        pid = self.master_pid()
        if pid is None:
            return None
        try:
            proc = runtime.show_proc(self._opts.master_socket)
        except EdgeError:
            return None
        return proc if proc.master_pid == pid else None

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
        self._admin.reset()
        self._last = None
        validate_table(table)
        validate_options(opts)
        layout = plan_layout(self._read_layout(), table, opts.policy)
        layout = compact(layout, table, opts.policy)
        text = render_config(table, layout, opts, validate=False)
        maps = render_maps(desired(table, layout).maps)
        if not opts.state_file.exists():
            write_atomic(opts.state_file, EMPTY_STATE)
        self._validate(table, layout)
        self._write_files(layout, text, maps)
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
        worker = self._wait_ready(old_worker=None)
        self._admin.reset(expect_pid=worker)
        self._set_loaded(strip_servers(text))

    def stop(self, timeout: float = 10.0) -> None:
        """Soft-stop (SIGUSR1: finish in-flight requests), then SIGTERM, then SIGKILL."""
        with self._lock:
            self._admin.close()
            self._last = None
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
        """Bring the files and the running proxy to ``table`` (see Router.apply)."""
        with self._lock:
            proc = self._running()
            if proc is None:
                raise EdgeError("HAProxy is not running; call ensure_running first")
            try:
                self._apply(table, proc)
            except BaseException:
                self._last = None  # the next apply reads and repairs everything
                raise

    def _apply(self, table: RoutingTable, proc: runtime.ProcInfo) -> None:
        same_proxy = self._last_proc == (proc.master_pid, proc.reloads)
        if self._last is not None and same_proxy and table == self._last_table:
            return  # at rest: nothing changed since the last successful apply
        if not same_proxy:  # restarted or reloaded by someone else: pooled connections may
            self._admin.reset()  # reach a worker that is stopping
        layout, text, reload_needed = self._plan(table)
        want = desired(table, layout)
        maps = render_maps(want.maps)
        if reload_needed:
            self._validate(table, layout)
            self._reload_with(layout, text, maps)
            proc = runtime.show_proc(self._opts.master_socket)
            full = True
        else:
            self._write_files(layout, text, maps)
            full = self._last is None or self._last_proc != (proc.master_pid, proc.reloads)
        self._sync(want, full)
        self._last_proc = (proc.master_pid, proc.reloads)
        self._last_table = table

    def check(self, table: RoutingTable) -> None:
        """Raise EdgeError if ``table`` could not be applied; changes nothing (see Router)."""
        layout, _, reload_needed = self._plan(table)
        if reload_needed:
            self._validate(table, layout)

    def _plan(self, table: RoutingTable) -> tuple[Layout, str, bool]:
        """The layout and config for ``table``, and whether they need a reload."""
        validate_table(table)
        validate_options(self._opts)
        policy = self._opts.policy
        layout = plan_layout(self.layout(), table, policy)
        text = render_config(table, layout, self._opts, validate=False)
        if strip_servers(text) == self._loaded_skeleton():
            return layout, text, False
        layout = compact(layout, table, policy)
        return layout, render_config(table, layout, self._opts, validate=False), True

    def _validate(self, table: RoutingTable, layout: Layout) -> None:
        """``haproxy -c`` on the config and maps (copies in a scratch directory); raises
        EdgeError with HAProxy's own messages, file names as the user knows them."""
        self._opts.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._write(self._opts.lua_path, HOLD_LUA)  # the config loads it
        scratch = self._opts.dir / f".check.{os.getpid()}.{threading.get_ident()}"
        scratch.mkdir(exist_ok=True)
        cfg = scratch / "haproxy.cfg"
        try:
            text = render_config(table, layout, self._opts, map_dir=scratch, validate=False)
            for name, content in render_maps(desired(table, layout).maps).items():
                self._opts.map_path(name, scratch).write_text(content)
            cfg.write_text(text)
            try:
                proc = subprocess.run(
                    [self._bin, "-c", "-f", str(cfg)],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EdgeError(f"could not run {self._bin} -c: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if proc.returncode != 0:
            output = f"{proc.stderr}\n{proc.stdout}".replace(str(cfg), "haproxy.cfg")
            output = output.replace(str(scratch), str(self._opts.dir))
            message = check_message(output, text.replace(str(scratch), str(self._opts.dir)),
                                    proc.returncode)  # fmt: skip
            raise EdgeError(f"HAProxy rejected the generated config: {message}")

    def _reload_with(self, layout: Layout, text: str, maps: Mapping[MapName, str]) -> None:
        """Write the files, reload; if the reload fails, put the previous files back (the old
        worker keeps serving them)."""
        paths = [self._opts.config_path, self._opts.layout_file]
        paths += [self._opts.map_path(name) for name in MAPS]
        backup = {path: read_text(path) for path in paths}
        ours = bound_ports(self._loaded_skeleton() or "") | bound_ports(backup[paths[0]] or "")
        busy = sorted(p for p in bound_ports(text) - ours if not bindable(p))  # a diagnosis only
        try:
            self._write_files(layout, text, maps)
            try:
                self._reload()
            except EdgeError as exc:
                if busy and "could not load" in exc.message:
                    ports = ", ".join(f"127.0.0.1:{p}" for p in busy[:10])
                    raise EdgeError(
                        f"HAProxy could not load the new config: {ports} in use by another"
                        " process; the previous config keeps serving",
                        fields={"ports": busy},
                    ) from exc
                raise
        except BaseException:
            self._written.clear()
            for path, previous in backup.items():
                if previous is None:
                    path.unlink(missing_ok=True)
                else:
                    write_atomic(path, previous)
            self._layout = None  # re-read from the restored file
            raise
        self._set_loaded(strip_servers(text))

    def _reload(self) -> None:
        opts = self._opts
        old = runtime.worker_pid(opts.admin_socket)
        failed_before = runtime.show_proc(opts.master_socket).reloads_failed
        try:
            state = runtime.dump_servers_state(self._admin)
        except EdgeError:
            state = EMPTY_STATE  # config alone is still correct; the sync fixes the rest
        write_atomic(opts.state_file, state)
        self._admin.reset()  # an open CLI connection would keep the old worker alive
        with contextlib.suppress(EdgeError):  # 2.6 may drop the CLI connection on re-exec
            runtime.reload(opts.master_socket)
        worker = self._wait_ready(old_worker=old, failed_before=failed_before)
        self._admin.reset(expect_pid=worker)

    def _wait_ready(self, old_worker: int | None, failed_before: int = 0) -> int:
        """Wait until the master lists a new current worker and it answers on admin.sock;
        returns its pid."""
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
                if new:
                    pid = runtime.worker_pid(opts.admin_socket, timeout=2.0)
                    if pid in new:
                        return pid
                last = f"workers {proc.workers}"
            except EdgeError as exc:
                if "could not load" in exc.message:
                    raise
                last = exc.message
            self._clock.sleep(0.05)
        raise EdgeError(f"HAProxy worker not ready after {self._reload_timeout}s ({last})")

    # -- runtime sync ------------------------------------------------------------------------

    def _sync(self, want: Desired, full: bool) -> None:
        """Make the runtime match ``want``: from the remembered state, or (``full``) from what
        HAProxy reports. Verified; one full repair, then EdgeError if it still differs."""
        current = self._read_current() if full or self._last is None else self._last
        plan = plan_sync(current, want)
        self._execute(plan)
        if plan.empty():  # nothing to change: ``current`` was just read, or was verified
            ok = True
        elif full:
            ok = plan_sync(self._read_current(), want).empty()
        else:
            ok = self._verify(want, plan)
        if not ok:
            self._execute(plan_sync(self._read_current(), want))
            leftover = plan_sync(self._read_current(), want)
            if not leftover.empty():
                raise EdgeError(
                    f"HAProxy runtime state does not match the routing table ({describe(leftover)})"
                )
        self._last = as_current(want)

    def _read_current(self) -> Current:
        rows = runtime.servers_state(self._admin)
        servers = {
            slot: {name: Observed(r.addr, r.port, r.state()) for name, r in by_name.items()}
            for slot, by_name in rows.items()
            if parse_slot(slot) is not None
        }
        loaded = self._loaded_skeleton() or ""
        maps = {
            name: runtime.show_map(self._admin, path) if f"map({path}" in loaded else {}
            for name in MAPS
            for path in [self._opts.map_path(name)]
        }  # a map the config does not use (no internal port bound yet) is unknown to HAProxy
        return Current(servers, maps)

    def _verify(self, want: Desired, plan: SyncPlan) -> bool:
        """Read back only what ``plan`` touched: its slots' servers and its map keys."""
        slots = plan.touched_slots()
        if len(slots) > VERIFY_ONE_BY_ONE:
            rows = runtime.servers_state(self._admin)
        else:
            rows = {}
            for slot in slots:
                rows.update(runtime.servers_state(self._admin, slot))
        servers = {
            slot: {n: Observed(r.addr, r.port, r.state()) for n, r in rows.get(slot, {}).items()}
            for slot in slots
        }
        entries: dict[MapName, dict[str, str | None]] = {}
        for name, keys in plan.touched_keys().items():
            path = self._opts.map_path(name)
            if len(keys) > VERIFY_ONE_BY_ONE:
                running = runtime.show_map(self._admin, path)
                entries[name] = {key: running.get(key) for key in keys}
            else:
                entries[name] = {key: runtime.get_map(self._admin, path, key) for key in keys}
        return not mismatches(servers, entries, want)

    def _execute(self, plan: SyncPlan) -> None:
        admin, clock, grace = self._admin, self._clock, self._del_grace
        self._map_ops(plan.check_maps)
        runtime.del_servers(admin, plan.early_deletes, clock, grace=grace)
        for slot, server, recreate in plan.adds:
            if recreate:  # same name, new address
                runtime.del_servers(admin, [(slot, server.name)], clock, grace=grace)
            runtime.add_server(admin, slot, server.name, server_args(None, server))
            runtime.enable_health(admin, slot, server.name)
            self._set_state(slot, server)
        for slot, server in plan.states:
            self._set_state(slot, server)
        self._map_ops(plan.route_maps)
        runtime.del_servers(admin, plan.late_deletes, clock, grace=grace)
        self._map_ops(plan.stale_check_maps)

    def _set_state(self, slot: str, server: Server) -> None:
        runtime.set_server_state(self._admin, slot, server.name, server.state)
        if server.state == "ready":
            runtime.set_weight(self._admin, slot, server.name, 1)

    def _map_ops(self, ops: Iterable[MapOp]) -> None:
        """New keys first (one payload per map), then changed keys, then removed keys: the ops
        of one plan step touch distinct keys, so this order is as good as theirs."""
        ops = list(ops)
        adds: dict[MapName, list[tuple[str, str]]] = {}
        for op, name, key, value in ops:
            if op == "add":
                adds.setdefault(name, []).append((key, value))
        for name, entries in adds.items():
            runtime.add_map(self._admin, self._opts.map_path(name), entries)
        for op, name, key, value in ops:
            if op == "set":
                runtime.set_map(self._admin, self._opts.map_path(name), key, value)
        for op, name, key, _ in ops:
            if op == "del":
                runtime.del_map(self._admin, self._opts.map_path(name), key)

    # -- files -------------------------------------------------------------------------------

    def _write_files(self, layout: Layout, text: str, maps: Mapping[MapName, str]) -> None:
        """Maps, then the layout, then the config; each only if it changed."""
        self._write(self._opts.lua_path, HOLD_LUA)
        for name in MAPS:
            self._write(self._opts.map_path(name), maps[name])
        self._write(self._opts.layout_file, layout.to_json())
        self._write(self._opts.config_path, text)
        self._layout = layout

    def _write(self, path: Path, text: str) -> None:
        if self._written.get(path) == text:
            return
        if path not in self._written and read_text(path) == text:
            self._written[path] = text
            return
        write_atomic(path, text)
        self._written[path] = text

    def _read_layout(self) -> Layout:
        text = read_text(self._opts.layout_file)
        if text is not None:
            with contextlib.suppress(EdgeError):  # unreadable: start over (a reload follows)
                return Layout.from_json(text)
        return initial_layout(self._opts.policy)

    def _loaded_skeleton(self) -> str | None:
        if self._loaded is None:
            self._loaded = read_text(self._marker)
        return self._loaded

    def _set_loaded(self, skeleton: str) -> None:
        write_atomic(self._marker, skeleton)
        self._loaded = skeleton

    # -- observation -------------------------------------------------------------------------

    def all_server_stats(self) -> dict[tuple[str, str], ServerStats]:
        """Every server's stats from one ``show stat``, keyed by (service, server)."""
        by_slot = self.layout().services_by_slot()
        stats = runtime.show_stat(self._admin)
        return {(by_slot[px], sv): st for (px, sv), st in stats.items() if px in by_slot}

    def server_stats(self, backend: str, server: str) -> ServerStats | None:
        """One service's server (``backend`` is the service name); one ``show stat``."""
        slot = self.layout().slots.get(backend)
        if slot is None:
            return None
        return runtime.show_stat(self._admin, slot).get((slot, server))

    def reloads(self) -> int:
        """Reloads of the running master (HAProxy's own count, failed ones included)."""
        return runtime.show_proc(self._opts.master_socket).reloads

    def old_workers(self) -> int:
        """Workers left by a reload and still finishing connections (bounded by hard-stop)."""
        return len(runtime.show_proc(self._opts.master_socket).old_workers)

    def _log_tail(self, limit: int = 2000) -> str:
        return (read_text(self._opts.log_file) or "")[-limit:].strip()


# -- helpers ---------------------------------------------------------------------------------


def check_message(output: str, config: str, returncode: int) -> str:
    """HAProxy's ALERT/WARNING lines from ``haproxy -c``, prefixes trimmed, plus the config line
    the first one points at; never empty."""
    lines = []
    for raw in output.splitlines():
        line = raw.strip()
        match = _CHECK_PREFIX.match(line)
        if match is None or any(noise in line for noise in _CHECK_NOISE):
            continue
        lines.append(f"[{match.group(1)}] {line[match.end() :]}")
    if not lines:
        rest = " ".join(line.strip() for line in output.splitlines() if line.strip())
        return rest[-1000:] or f"haproxy -c exited with code {returncode} and printed nothing"
    message = "; ".join(lines[:5])
    where = re.search(r"haproxy\.cfg:(\d+)\]", message)
    config_lines = config.splitlines()
    if where and 0 < int(where.group(1)) <= len(config_lines):
        message += f" (line {where.group(1)}: {config_lines[int(where.group(1)) - 1].strip()})"
    return message


def describe(plan: SyncPlan) -> str:
    parts: list[str] = []
    refs: list[ServerRef] = [*plan.early_deletes, *plan.late_deletes]
    if plan.adds:
        parts.append("missing servers " + ", ".join(f"{s}/{srv.name}" for s, srv, _ in plan.adds))
    if plan.states:
        parts.append("server states " + ", ".join(f"{s}/{srv.name}" for s, srv in plan.states))
    if refs:
        parts.append("extra servers " + ", ".join(f"{s}/{n}" for s, n in refs))
    ops = [*plan.check_maps, *plan.route_maps, *plan.stale_check_maps]
    if ops:
        parts.append("map entries " + ", ".join(f"{name}.map {key}" for _, name, key, _ in ops))
    return "; ".join(parts)[:1000]


def bound_ports(config: str) -> set[int]:
    """The 127.0.0.1 ports the internal frontend of ``config`` binds."""
    ports: set[int] = set()
    for match in _BIND.finditer(config):
        lo = int(match.group(1))
        ports.update(range(lo, int(match.group(2) or lo) + 1))
    return ports


def bindable(port: int) -> bool:
    """True if nothing else listens on 127.0.0.1:``port``."""
    if not 0 < port < 65536:
        return True  # haproxy -c has rejected it already
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` atomically (rename). No fsync: these files matter only to a running
    HAProxy, and after a power loss (which stops HAProxy too) ensure_running rewrites every one
    of them from the table before starting it; a damaged layout.json is ignored then."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
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
