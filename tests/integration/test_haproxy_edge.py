"""HAProxyEdge against a real HAProxy 2.6 and real HTTP backends.

The tests share one HAProxy (module fixture) and run in file order, like a deploy would:
start, add, reload, drain, delete, adopt, churn, stop. Internal ports here are arbitrary
(no port base), as today's control plane allocates them: a new port means a reload, which is
what these tests exercise; test_haproxy_slots.py covers the reload-free paths.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge, runtime
from shipyard.drivers.haproxy import edge as edge_module
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server
from tests.integration.haproxy_helpers import AppProcess, backend_apps, http_get
from tests.support.harness import free_port

pytestmark = pytest.mark.integration

HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
if HAPROXY is None:
    pytest.skip("haproxy binary not installed", allow_module_level=True)


@dataclass
class Env:
    edge: HAProxyEdge
    opts: EdgeOptions
    apps: dict[str, AppProcess]
    ports: dict[str, int]

    def server(self, name: str, state: str = "ready") -> Server:
        return Server(name, "127.0.0.1", self.apps[name].port, state)  # type: ignore[arg-type]

    def table(self, *app_servers: Server, other: bool = False) -> RoutingTable:
        app = Backend("app", "http", self.ports["app"], ("app.test",), "/healthz", "app.test")
        backends = [
            replace(app, servers=app_servers or (self.server("a1"),)),
            Backend("priv", "http", self.ports["priv"], servers=(self.server("p1"),)),
        ]
        if other:
            backends.append(Backend("other", "http", self.ports["other"], ("other.test",)))
        return RoutingTable(tuple(backends))

    def worker(self) -> int:
        return runtime.worker_pid(self.opts.admin_socket)

    def runtime_servers(self, service: str) -> dict[str, runtime.RuntimeServer]:
        slot = self.edge.layout().slots[service]
        return runtime.show_servers_state(self.opts.admin_socket, slot)

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        return http_get(self.opts.http_port, path, host)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    opts = EdgeOptions(dir=tmp_path_factory.mktemp("edge"), http_port=free_port())
    edge = HAProxyEdge(opts, haproxy_bin=str(HAPROXY))
    ports = {name: free_port() for name in ("app", "priv", "other")}
    with backend_apps("a1", "a2", "a3", "p1") as apps:
        try:
            yield Env(edge, opts, apps, ports)
        finally:
            edge.stop(timeout=2)


def test_routes_by_host_and_keeps_private_services_private(env: Env) -> None:
    env.edge.ensure_running(env.table())
    assert env.get("App.Test:8080") == (200, "a1 http\n")
    status, body = env.get("nope.example")
    assert (status, body) == (404, "No service is routed for host 'nope.example'.\n")
    for host in ("priv", "PRIV", f"127.0.0.1:{env.ports['priv']}", "localhost", ""):
        status, body = env.get(host)
        assert status == 404 and "p1" not in body
    assert http_get(env.ports["priv"])[0] == 200  # internal listener
    assert "p1" in http_get(env.ports["priv"])[1]


def test_add_server_at_runtime_goes_to_file_and_runtime(env: Env) -> None:
    worker = env.worker()
    env.edge.apply(env.table(env.server("a1"), env.server("a2")))
    assert env.worker() == worker  # no reload for a server change
    assert f"server a2 127.0.0.1:{env.apps['a2'].port} " in env.opts.config_path.read_text()
    assert set(env.runtime_servers("app")) == {"a1", "a2"}
    seen = {env.get("app.test")[1].split()[0] for _ in range(6)}
    assert seen == {"a1", "a2"}


def test_reload_on_new_port_forgets_no_server(env: Env) -> None:
    worker, reloads = env.worker(), env.edge.reloads()
    env.edge.apply(env.table(env.server("a1"), env.server("a2"), other=True))
    assert env.worker() != worker  # the new internal port is outside the bound ranges
    assert env.edge.reloads() == reloads + 1
    assert set(env.runtime_servers("app")) == {"a1", "a2"}
    assert set(env.runtime_servers("priv")) == {"p1"}
    assert {env.get("app.test")[1].split()[0] for _ in range(6)} == {"a1", "a2"}
    assert env.get("other.test")[0] == 503  # routed, but it has no server yet


def test_bad_config_never_replaces_a_good_one(env: Env) -> None:
    before = env.opts.config_path.read_text()
    bad = env.table(env.server("a1"), env.server("a2"), other=True)
    bad = RoutingTable((*bad.backends, Backend("broken", "http", 70000)))
    with pytest.raises(EdgeError, match="rejected") as err:
        env.edge.apply(bad)
    assert "invalid port '70000'" in err.value.message  # haproxy -c's own words
    assert "[haproxy.cfg:" in err.value.message and str(env.opts.dir) not in err.value.message
    assert env.opts.config_path.read_text() == before
    with pytest.raises(EdgeError, match="invalid port '70000'"):
        env.edge.check(bad)


def test_failed_reload_keeps_the_old_worker_and_file(env: Env) -> None:
    good = env.table(env.server("a1"), env.server("a2"), other=True)
    before, worker = env.opts.config_path.read_text(), env.worker()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = RoutingTable((*good.backends, Backend("taken", "http", port)))
        with pytest.raises(EdgeError, match=f"could not load.*127.0.0.1:{port} in use"):
            env.edge.apply(taken)
    assert env.opts.config_path.read_text() == before
    assert env.worker() == worker and env.get("app.test")[0] == 200
    assert env.edge.layout().slots.keys() == {"app", "priv", "other"}
    env.edge.apply(good)  # the master accepts the next reload
    assert set(env.runtime_servers("app")) == {"a1", "a2"}


def test_reload_failing_in_haproxy_restores_every_file(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = env.table(env.server("a1"), env.server("a2"), other=True)
    files = [env.opts.config_path, env.opts.layout_file, env.opts.map_path("ports")]
    before, worker = [f.read_text() for f in files], env.worker()
    reloads = env.edge.reloads()
    monkeypatch.setattr(edge_module, "bindable", lambda port: True)  # skip the pre-check
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = RoutingTable((*good.backends, Backend("taken", "http", busy.getsockname()[1])))
        with pytest.raises(EdgeError, match="could not load"):
            env.edge.apply(taken)
    assert env.edge.reloads() == reloads + 1  # HAProxy tried, and failed
    assert [f.read_text() for f in files] == before
    assert env.worker() == worker and env.get("app.test")[0] == 200
    assert "taken" not in env.edge.layout().slots
    env.edge.apply(good)
    assert set(env.runtime_servers("app")) == {"a1", "a2"}


def test_drain_lets_inflight_requests_finish(env: Env) -> None:
    results: list[tuple[int, str]] = []
    slow = [
        threading.Thread(target=lambda: results.append(env.get("app.test", "/slow?s=1.5")))
        for _ in range(2)
    ]
    for thread in slow:  # roundrobin: one slow request per server
        thread.start()
    _wait(lambda: _scur(env, "a2") == 1)
    env.edge.apply(env.table(env.server("a1"), env.server("a2", "drain"), other=True))
    stats = env.edge.server_stats("app", "a2")
    assert stats is not None and stats.status.startswith("DRAIN") and not stats.idle
    assert {env.get("app.test")[1].split()[0] for _ in range(4)} == {"a1"}
    _wait(lambda: _scur(env, "a2") == 0, timeout=5)
    for thread in slow:
        thread.join()
    assert sorted(r[0] for r in results) == [200, 200]
    assert "weight 0" in env.opts.config_path.read_text().split("server a2 ")[1].splitlines()[0]


def test_delete_server(env: Env) -> None:
    env.edge.apply(env.table(env.server("a1"), other=True))
    assert set(env.runtime_servers("app")) == {"a1"}
    assert "server a2 " not in env.opts.config_path.read_text()
    assert env.edge.server_stats("app", "a2") is None


def test_second_edge_adopts_the_running_master(env: Env) -> None:
    master, worker, reloads = env.edge.master_pid(), env.worker(), env.edge.reloads()
    adopter = HAProxyEdge(env.opts, haproxy_bin=str(HAPROXY))
    adopter.ensure_running(env.table(env.server("a1"), other=True))
    assert adopter.master_pid() == master
    assert env.worker() == worker  # same config: adopted without a reload
    assert adopter.reloads() == reloads
    assert adopter.layout().slots == env.edge.layout().slots
    assert env.get("app.test") == (200, "a1 http\n")


def test_a_lost_loaded_marker_costs_one_reload(env: Env) -> None:
    (env.opts.dir / "haproxy.cfg.loaded").unlink()  # as if a daemon died right after a start
    adopter = HAProxyEdge(env.opts, haproxy_bin=str(HAPROXY))
    reloads = adopter.reloads()
    adopter.ensure_running(env.table(env.server("a1"), other=True))  # our own ports: not busy
    assert adopter.reloads() == reloads + 1
    assert env.get("app.test") == (200, "a1 http\n") and env.get("other.test")[0] == 503


def test_no_failed_request_while_servers_change_and_reload(env: Env) -> None:
    failures: list[str] = []
    done = threading.Event()

    def load() -> None:
        for _ in range(300):
            try:
                status, body = env.get("app.test")
                if status != 200:
                    failures.append(f"{status} {body}")
            except OSError as exc:
                failures.append(repr(exc))
        done.set()

    thread = threading.Thread(target=load)
    thread.start()
    steps = [
        env.table(env.server("a1"), env.server("a2"), other=True),
        env.table(env.server("a1"), env.server("a2"), env.server("a3"), other=True),
        env.table(env.server("a1", "drain"), env.server("a2"), env.server("a3"), other=True),
        env.table(env.server("a2"), env.server("a3"), other=True),
        env.table(env.server("a2"), env.server("a3")),  # removes a service
        env.table(env.server("a1"), env.server("a3")),
    ]
    for table in steps:
        env.edge.apply(table)
        time.sleep(0.15)
    thread.join(timeout=30)
    assert done.is_set() and failures == []
    assert env.edge.old_workers() in (0, 1)


def test_stop_leaves_no_process(env: Env) -> None:
    master = env.edge.master_pid()
    assert master is not None
    workers = runtime.show_proc(env.opts.master_socket)
    env.edge.stop(timeout=5)
    assert not env.edge.is_running()
    for pid in (master, *workers.workers, *workers.old_workers):
        assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid)
    assert not env.opts.admin_socket.exists() and not env.opts.pidfile.exists()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "Z"


def _scur(env: Env, server: str) -> int:
    stats = env.edge.server_stats("app", server)
    return -1 if stats is None else stats.scur


def _wait(predicate: object, timeout: float = 3.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_start_with_an_empty_table_then_route(tmp_path: Path) -> None:
    opts = EdgeOptions(dir=tmp_path / "edge", http_port=free_port())
    edge = HAProxyEdge(opts, haproxy_bin=str(HAPROXY))
    with backend_apps("e1") as apps:
        try:
            edge.ensure_running(RoutingTable())  # no internal port: no internal frontend
            assert http_get(opts.http_port, "/", "e.test")[0] == 404
            edge.ensure_running(RoutingTable())  # a full sync of a config without ports.map
            server = Server("e1", "127.0.0.1", apps["e1"].port)
            port = free_port()
            edge.apply(RoutingTable((Backend("e", "http", port, ("e.test",), servers=(server,)),)))
            assert http_get(opts.http_port, "/", "e.test") == (200, "e1 http\n")
            assert http_get(port)[1].startswith("e1 ")
            edge.apply(RoutingTable())
            assert http_get(opts.http_port, "/", "e.test")[0] == 404
        finally:
            edge.stop(timeout=2)
