"""500 web services on one HAProxy: in one apply (a Blueprint deploy), and grown one service at
a time (a measurement, printed; run with ``-s`` to see it; no timed assertion)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge
from shipyard.route.table import Backend, RoutingTable, Server
from tests.integration.haproxy_helpers import http_get, multi_apps
from tests.support.harness import free_port, free_port_block

pytestmark = pytest.mark.integration

HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
if HAPROXY is None:
    pytest.skip("haproxy binary not installed", allow_module_level=True)

COUNT = 500
NAMES = [f"w{i}" for i in range(COUNT)]


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, int]]:
    with multi_apps(NAMES) as ports:
        yield ports


def services(ports: dict[str, int], base: int, count: int) -> RoutingTable:
    return RoutingTable(
        tuple(
            Backend(
                name,
                "http",
                base + i,
                (f"{name}.test",),
                "/healthz",
                f"{name}.test",
                (Server(f"{name}-1", "127.0.0.1", ports[name]),),
            )
            for i, name in enumerate(NAMES[:count])
        )
    )


def edge_at(tmp: Path, base: int) -> HAProxyEdge:
    opts = EdgeOptions(dir=tmp, http_port=free_port(), internal_port_base=base)
    return HAProxyEdge(opts, haproxy_bin=str(HAPROXY))


def test_five_hundred_services_in_one_apply(
    tmp_path_factory: pytest.TempPathFactory, apps: dict[str, int]
) -> None:
    base = free_port_block(1024)
    edge = edge_at(tmp_path_factory.mktemp("edge"), base)
    try:
        edge.ensure_running(services(apps, base, 1))
        reloads = edge.reloads()
        started = time.monotonic()
        edge.apply(services(apps, base, COUNT))
        took = time.monotonic() - started
        assert edge.reloads() == reloads + 1  # the pool and the port region grow once
        for i, name in enumerate(NAMES):
            status, body = http_get(edge.opts.http_port, "/", f"{name}.test")
            assert (status, body.split()[0]) == (200, name)
            assert http_get(base + i)[1].split()[0] == name
        print(f"\n500 services in one apply: {took:.2f} s, 1 reload")
    finally:
        edge.stop(timeout=2)


def test_growing_to_five_hundred_one_service_at_a_time(
    tmp_path_factory: pytest.TempPathFactory, apps: dict[str, int]
) -> None:
    base = free_port_block(1024)
    edge = edge_at(tmp_path_factory.mktemp("edge"), base)
    try:
        edge.ensure_running(services(apps, base, 1))
        reloads = edge.reloads()
        times: list[float] = []
        started = time.monotonic()
        for count in range(2, COUNT + 1):
            table = services(apps, base, count)
            t0 = time.monotonic()
            edge.apply(table)
            times.append(time.monotonic() - t0)
        total = time.monotonic() - started
        grown = edge.reloads() - reloads
        for name in NAMES:
            status, body = http_get(edge.opts.http_port, "/", f"{name}.test")
            assert (status, body.split()[0]) == (200, name)
        quiet = sorted(times)[len(times) // 2]
        table = services(apps, base, COUNT)
        t0 = time.monotonic()
        for _ in range(10):
            edge.apply(table)  # at rest: nothing changed
        at_rest = (time.monotonic() - t0) / 10
        t0 = time.monotonic()
        stats = edge.all_server_stats()
        one_stat = time.monotonic() - t0
        assert len(stats) == COUNT
        print(
            f"\n1 -> {COUNT} services one at a time: {total:.1f} s in all, median apply"
            f" {quiet * 1000:.1f} ms, slowest {max(times) * 1000:.0f} ms, last 10 applies"
            f" {sum(times[-10:]) * 100:.1f} ms each, {grown} reloads,"
            f" admin connections {edge.admin.connects}, pools {dict(edge.layout().pools)},"
            f" ports {edge.layout().port_ranges()}; apply at rest {at_rest * 1000:.1f} ms;"
            f" all_server_stats for {COUNT} servers {one_stat * 1000:.1f} ms"
        )
        assert grown <= 25  # pools and ports grow geometrically: O(log n) reloads
    finally:
        edge.stop(timeout=2)
