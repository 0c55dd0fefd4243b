"""HAProxyEdge: the Router backed by Shipyard's own HAProxy, in master-worker mode.

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

The edge sequences the parts that live beside it: process.py (starting, adopting and stopping
HAProxy), files.py (the files in ``opts.dir``, written before the change they describe),
check.py (``haproxy -c`` and why a reload failed), sync.py (the incremental, verified runtime
sync) and runtime.py (the runtime API).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping

from shipyard.clock import Clock, SystemClock
from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.check import bindable, bound_ports, check_config, check_message
from shipyard.drivers.haproxy.config import (
    HOLD_LUA,
    EdgeOptions,
    render_config,
    render_maps,
    strip_servers,
    validate_options,
    validate_table,
)
from shipyard.drivers.haproxy.files import EMPTY_STATE, EdgeFiles, read_text, write_atomic
from shipyard.drivers.haproxy.layout import Layout, compact, plan_layout
from shipyard.drivers.haproxy.process import (
    alive,
    cleanup_files,
    master_pid_from,
    signal_all,
    start_master,
    terminate,
    wait_ready,
)
from shipyard.drivers.haproxy.runtime import AdminClient
from shipyard.drivers.haproxy.sync import VERIFY_ONE_BY_ONE, RuntimeSync, describe
from shipyard.drivers.haproxy.view import Current, MapName, desired
from shipyard.errors import EdgeError
from shipyard.route.table import RoutingTable, ServerStats

__all__ = [  # the helpers that moved out of this module stay importable from it
    "EMPTY_STATE",
    "VERIFY_ONE_BY_ONE",
    "HAProxyEdge",
    "alive",
    "bindable",
    "bound_ports",
    "check_message",
    "describe",
    "master_pid_from",
    "read_text",
    "signal_all",
    "write_atomic",
]


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
        self._lock = threading.RLock()
        self._admin = AdminClient(opts.admin_socket)
        self._files = EdgeFiles(opts)
        self._syncer = RuntimeSync(
            opts, self._admin, self._clock, del_grace=del_grace, loaded=self._files.loaded_skeleton
        )
        self._layout: Layout | None = None  # loaded from layout.json on first use
        self._last: Current | None = None  # the runtime state after the last successful apply
        self._last_proc: tuple[int, int] | None = None  # (master pid, reloads) at that time
        self._last_table: RoutingTable | None = None  # the table of that apply

    @property
    def opts(self) -> EdgeOptions:
        return self._opts

    @property
    def admin(self) -> AdminClient:
        """The admin socket client (its ``counts`` show which commands were sent)."""
        return self._admin

    def layout(self) -> Layout:
        """The current slot assignment, pool sizes and bound ports (as persisted)."""
        if self._layout is None:
            self._layout = self._files.read_layout()
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
        cleanup_files(opts)
        self._admin.reset()
        self._last = None
        validate_table(table)
        validate_options(opts)
        layout = plan_layout(self._files.read_layout(), table, opts.policy)
        layout = compact(layout, table, opts.policy)
        text = render_config(table, layout, opts, validate=False)
        maps = render_maps(desired(table, layout).maps)
        if not opts.state_file.exists():
            write_atomic(opts.state_file, EMPTY_STATE)
        self._validate(table, layout)
        self._write_files(layout, text, maps)
        start_master(self._bin, opts)
        worker = wait_ready(opts, self._clock, self._reload_timeout, old_worker=None)
        self._admin.reset(expect_pid=worker)
        self._files.set_loaded(strip_servers(text))

    def stop(self, timeout: float = 10.0) -> None:
        """Soft-stop (SIGUSR1: finish in-flight requests), then SIGTERM, then SIGKILL."""
        with self._lock:
            self._admin.close()
            self._last = None
            pid = self.master_pid()
            if pid is not None:
                terminate(pid, self._opts.master_socket, self._clock, timeout)
            cleanup_files(self._opts)

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
        self._last = self._syncer.sync(want, self._last, full)
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
        if strip_servers(text) == self._files.loaded_skeleton():
            return layout, text, False
        layout = compact(layout, table, policy)
        return layout, render_config(table, layout, self._opts, validate=False), True

    def _validate(self, table: RoutingTable, layout: Layout) -> None:
        """``haproxy -c`` on the config and maps (see check.check_config)."""
        self._opts.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._files.write(self._opts.lua_path, HOLD_LUA)  # the config loads it
        check_config(self._bin, self._opts, table, layout)

    def _reload_with(self, layout: Layout, text: str, maps: Mapping[MapName, str]) -> None:
        """Write the files, reload; if the reload fails, put the previous files back (the old
        worker keeps serving them)."""
        backup = self._files.backup()
        ours = bound_ports(self._files.loaded_skeleton() or "")
        ours |= bound_ports(backup[self._opts.config_path] or "")
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
            self._files.restore(backup)
            self._layout = None  # re-read from the restored file
            raise
        self._files.set_loaded(strip_servers(text))

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
        worker = wait_ready(
            opts, self._clock, self._reload_timeout, old_worker=old, failed_before=failed_before
        )
        self._admin.reset(expect_pid=worker)

    def _write_files(self, layout: Layout, text: str, maps: Mapping[MapName, str]) -> None:
        """Maps, then the layout, then the config; each only if it changed."""
        self._files.write_all(layout, text, maps)
        self._layout = layout

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
