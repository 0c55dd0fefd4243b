"""HAProxyEdge with a port base: 60 web services and a few private ones on slots and maps, and
the changes that must not reload HAProxy (real HAProxy 2.6, real HTTP backends).

The tests share one HAProxy (module fixture) and run in file order, each starting from the
table the previous one left (``Env.services``).
"""

from __future__ import annotations

import csv
import io
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest

from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge, runtime
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server
from tests.integration.haproxy_helpers import (
    connect_refused,
    http_get,
    multi_apps,
)
from tests.support.harness import free_port, free_port_block

pytestmark = pytest.mark.integration

HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
if HAPROXY is None:
    pytest.skip("haproxy binary not installed", allow_module_level=True)

WEB = 60
APPS = [f"s{i}" for i in range(WEB)] + ["pv", "pc", "db"] + [f"n{i}" for i in range(40)]


@dataclass
class Env:
    edge: HAProxyEdge
    opts: EdgeOptions
    ports: dict[str, int]  # app name -> the port its HTTP server listens on
    base: int
    services: dict[str, Backend] = field(default_factory=dict)

    def web(self, name: str, index: int, *, path: str | None = "expect") -> Backend:
        health = f"/expect-host?h={name}.test" if path == "expect" else path
        server = Server(f"{name}-1", "127.0.0.1", self.ports[name])
        return Backend(
            name, "http", self.base + index, (f"{name}.test",), health, f"{name}.test", (server,)
        )

    def table(self) -> RoutingTable:
        return RoutingTable(tuple(self.services.values()))

    def apply(self) -> None:
        self.edge.apply(self.table())

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        return http_get(self.opts.http_port, path, host)

    def answers_from(self, host: str) -> str:
        status, body = self.get(host)
        assert status == 200, (host, status, body)
        return body.split()[0]

    def worker(self) -> int:
        return runtime.worker_pid(self.opts.admin_socket)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = free_port_block(256)
    opts = EdgeOptions(
        dir=tmp_path_factory.mktemp("edge"), http_port=free_port(), internal_port_base=base
    )
    edge = HAProxyEdge(opts, haproxy_bin=str(HAPROXY))
    with multi_apps(APPS) as ports:
        e = Env(edge, opts, ports, base)
        for i in range(WEB):  # every sixth web service has no health check path
            e.services[f"s{i}"] = e.web(f"s{i}", i, path=None if i % 6 == 5 else "expect")
        e.services["pv"] = replace(e.web("pv", WEB, path=None), public_hosts=())  # private web
        e.services["pc"] = replace(e.web("pc", WEB + 1), public_hosts=())  # private, checked
        e.services["db"] = Backend(
            "db", "tcp", base + WEB + 2, servers=(Server("db-1", "127.0.0.1", ports["db"]),)
        )
        try:
            yield e
        finally:
            edge.stop(timeout=2)


def test_sixty_services_routed_end_to_end(env: Env) -> None:
    env.edge.ensure_running(env.table())
    for i in range(WEB):
        assert env.answers_from(f"s{i}.test") == f"s{i}"
    assert env.get("S7.Test:8080")[1].startswith("s7 http")
    assert env.get("nope.test") == (404, "No service is routed for host 'nope.test'.\n")
    assert env.get("pv")[0] == 404 and env.get("db")[0] == 404  # private: never public
    for name, backend in env.services.items():  # every internal port reaches its own backend
        assert http_get(backend.internal_port)[1].split()[0] == name
    assert http_get(env.services["db"].internal_port)[1] == "db -\n"  # tcp: no X-F-Proto
    assert env.edge.layout().binds(env.base + 120)
    assert connect_refused(env.base + 120)  # bound, but nobody's port
    layout = env.edge.layout()
    assert {s[3] for s in layout.slots.values()} == {"h", "c", "t"}
    assert len(env.opts.config_path.read_text().splitlines()) < 2000


def test_health_checks_send_each_services_path_and_host(env: Env) -> None:
    expected = {(name, f"{name}-1") for name in env.services}
    _wait(lambda: _up(env) == expected, timeout=15)  # /expect-host is 421 for a wrong Host


def test_stats_for_all_servers_come_from_one_show_stat(env: Env) -> None:
    before = dict(env.edge.admin.counts)
    stats = env.edge.all_server_stats()
    after = env.edge.admin.counts
    assert set(stats) == {(name, f"{name}-1") for name in env.services}
    assert {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)} == {
        "show stat": 1
    }
    assert env.edge.server_stats("s3", "s3-1") is not None
    assert env.edge.server_stats("s3", "nope") is None
    assert env.edge.server_stats("unknown", "s3-1") is None


def test_persistent_runtime_connection(env: Env) -> None:
    connects = env.edge.admin.connects
    for _ in range(20):
        env.edge.all_server_stats()
        env.edge.server_stats("s1", "s1-1")
    assert env.edge.admin.connects == connects


def test_apply_at_rest_sends_nothing(env: Env) -> None:
    before = sum(env.edge.admin.counts.values())
    for _ in range(5):
        env.apply()
    assert sum(env.edge.admin.counts.values()) == before


def test_adding_a_service_causes_no_reload(env: Env) -> None:
    reloads, worker = env.edge.reloads(), env.worker()
    before = dict(env.edge.admin.counts)
    env.services["n0"] = env.web("n0", WEB + 3)
    env.apply()
    assert env.answers_from("n0.test") == "n0"
    assert http_get(env.base + WEB + 3)[1].split()[0] == "n0"
    assert env.edge.reloads() == reloads and env.worker() == worker
    sent = {k: v - before.get(k, 0) for k, v in env.edge.admin.counts.items()}
    assert sent.get("show servers", 0) <= 1 and sent.get("show map", 0) == 0  # incremental
    assert "n0.test" in env.opts.map_path("hosts").read_text()


def test_check_runs_haproxy_only_for_a_config_change(env: Env) -> None:
    no_binary = HAProxyEdge(env.opts, haproxy_bin="/nonexistent/haproxy")
    spare = dict(env.services, n37=env.web("n37", WEB + 44))
    no_binary.check(RoutingTable(tuple(spare.values())))  # slots and maps only: no haproxy -c
    far = dict(env.services, n37=replace(env.web("n37", 0), internal_port=env.base + 1000))
    with pytest.raises(EdgeError, match="could not run"):
        no_binary.check(RoutingTable(tuple(far.values())))  # a new bind: haproxy -c
    with pytest.raises(EdgeError, match="duplicate public host"):
        env.edge.check(RoutingTable((*env.table().backends, replace(env.web("n37", 99),
            public_hosts=("s1.test",)))))  # fmt: skip
    assert "n37" not in env.edge.layout().slots  # check changes nothing


def test_adding_and_removing_a_domain_causes_no_reload(env: Env) -> None:
    reloads = env.edge.reloads()
    s3 = env.services["s3"]
    env.services["s3"] = replace(s3, public_hosts=(*s3.public_hosts, "www.example.org"))
    env.apply()
    assert env.answers_from("WWW.example.org") == "s3"
    env.services["s3"] = s3
    env.apply()
    assert env.get("www.example.org")[0] == 404
    assert "www.example.org" not in env.opts.map_path("hosts").read_text()
    assert env.edge.reloads() == reloads


def test_moving_a_domain_between_services_causes_no_reload(env: Env) -> None:
    reloads = env.edge.reloads()
    s4, s8 = env.services["s4"], env.services["s8"]
    env.services["s4"] = replace(s4, public_hosts=())
    env.services["s8"] = replace(s8, public_hosts=(*s8.public_hosts, "s4.test"))
    env.apply()
    assert env.answers_from("s4.test") == "s8"
    env.services["s4"], env.services["s8"] = s4, s8
    env.apply()
    assert env.answers_from("s4.test") == "s4"
    assert env.edge.reloads() == reloads


def test_changing_a_health_path_causes_no_reload(env: Env) -> None:
    reloads = env.edge.reloads()
    s2 = env.services["s2"]
    env.services["s2"] = replace(s2, health_path="/missing")
    env.apply()
    assert f"{env.edge.layout().slots['s2']} /missing" in env.opts.map_path("health").read_text()
    _wait(lambda: _check_code(env, "s2") == "404", timeout=6)  # the next check uses it
    env.services["s2"] = s2
    env.apply()
    _wait(lambda: _check_code(env, "s2") == "200", timeout=6)
    assert env.edge.reloads() == reloads


def test_kind_changes_move_services_without_reload(env: Env) -> None:
    reloads = env.edge.reloads()
    slots = dict(env.edge.layout().slots)
    env.services["s1"] = replace(env.services["s1"], health_path=None)  # h -> c
    env.services["s5"] = env.web("s5", 5)  # c -> h
    env.apply()
    layout = env.edge.layout()
    assert layout.slots["s1"][3] == "c" and layout.slots["s5"][3] == "h"
    assert layout.slots["s1"] != slots["s1"]
    assert env.answers_from("s1.test") == "s1" and env.answers_from("s5.test") == "s5"
    assert http_get(env.services["s1"].internal_port)[1].split()[0] == "s1"
    assert env.edge.reloads() == reloads
    old = runtime.show_servers_state(env.opts.admin_socket, slots["s1"])
    assert old == {}  # the old slot was emptied


def test_removing_a_service_causes_no_reload(env: Env) -> None:
    reloads = env.edge.reloads()
    s7 = env.services.pop("s7")
    slot = env.edge.layout().slots["s7"]
    env.apply()
    assert env.get("s7.test")[0] == 404
    assert connect_refused(s7.internal_port)
    assert "s7-1" not in env.opts.config_path.read_text()
    assert runtime.show_servers_state(env.opts.admin_socket, slot) == {}
    assert "s7" not in env.edge.layout().slots
    assert env.edge.reloads() == reloads


def test_server_changes_cause_no_reload(env: Env) -> None:
    reloads = env.edge.reloads()
    s9 = env.services["s9"]
    second = Server("s9-2", "127.0.0.1", env.ports["n39"])
    env.services["s9"] = replace(s9, servers=(*s9.servers, second))
    env.apply()
    assert {env.answers_from("s9.test") for _ in range(6)} == {"s9", "n39"}
    env.services["s9"] = replace(s9, servers=(replace(s9.servers[0], state="drain"), second))
    env.apply()
    assert {env.answers_from("s9.test") for _ in range(4)} == {"n39"}
    env.services["s9"] = s9
    env.apply()
    assert {env.answers_from("s9.test") for _ in range(4)} == {"s9"}
    assert env.edge.reloads() == reloads


def test_exhausting_the_pool_reloads_once_without_failed_requests(env: Env) -> None:
    layout = env.edge.layout()
    free = layout.size("h") - sum(1 for s in layout.slots.values() if s.startswith("be_h"))
    assert 0 < free < 39
    failures: list[str] = []
    done = threading.Event()
    count = 0

    def hammer() -> None:
        nonlocal count
        while not done.is_set():
            try:
                status, body = env.get("s0.test")
                if status != 200 or not body.startswith("s0 "):
                    failures.append(f"{status} {body}")
            except OSError as exc:
                failures.append(repr(exc))
            count += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    reloads = env.edge.reloads()
    try:
        for i in range(1, free + 2):  # one more than the spare slots
            env.services[f"n{i}"] = env.web(f"n{i}", WEB + 3 + i)
            env.apply()
            expected = reloads if i <= free else reloads + 1
            assert env.edge.reloads() == expected, f"after adding {i} of {free + 1}"
        time.sleep(0.3)
    finally:
        done.set()
        thread.join(timeout=30)
    assert failures == [] and count > 20
    assert env.edge.layout().size("h") > layout.size("h")
    for i in range(1, free + 2):
        assert env.answers_from(f"n{i}.test") == f"n{i}"
    assert env.answers_from("s9.test") == "s9"  # nothing forgotten by the reload
    _wait(lambda: env.edge.old_workers() == 0, timeout=10)  # no CLI connection holds it


def test_a_restarted_daemon_adopts_the_proxy_and_keeps_the_slots(env: Env) -> None:
    reloads, worker, slots = env.edge.reloads(), env.worker(), dict(env.edge.layout().slots)
    adopter = HAProxyEdge(env.opts, haproxy_bin=str(HAPROXY))
    adopter.ensure_running(env.table())
    assert adopter.layout().slots == slots
    assert adopter.reloads() == reloads and env.worker() == worker
    env.services["n38"] = env.web("n38", WEB + 45)
    adopter.apply(env.table())
    assert env.answers_from("n38.test") == "n38" and adopter.reloads() == reloads
    env.edge = adopter


def test_adoption_repairs_runtime_drift(env: Env) -> None:
    slot = env.edge.layout().slots["s11"]
    runtime.del_map(env.opts.admin_socket, env.opts.map_path("hosts"), "s11.test")
    runtime.set_server_state(env.opts.admin_socket, slot, "s11-1", "maint")
    assert env.get("s11.test")[0] == 404  # someone broke it behind the edge's back
    reloads = env.edge.reloads()
    adopter = HAProxyEdge(env.opts, haproxy_bin=str(HAPROXY))
    adopter.ensure_running(env.table())  # a new daemon reads everything once
    assert env.answers_from("s11.test") == "s11" and adopter.layout().slots["s11"] == slot
    assert adopter.reloads() == reloads
    env.edge = adopter


def _up(env: Env) -> set[tuple[str, str]]:
    stats = env.edge.all_server_stats()
    return {key for key, st in stats.items() if st.status.upper().startswith("UP")}


def _check_code(env: Env, service: str) -> str:
    slot = env.edge.layout().slots[service]
    text = runtime.send(env.opts.admin_socket, f"show stat {slot} 4 -1")
    rows = list(csv.DictReader(io.StringIO(text[2:])))
    return rows[0]["check_code"] if rows else ""


def _wait(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)
