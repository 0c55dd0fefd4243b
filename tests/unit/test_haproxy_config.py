"""Golden-file tests for the HAProxy config renderer, plus runtime answer parsing.

Regenerate the golden files with ``SHIPYARD_UPDATE_GOLDEN=1`` set when running this file,
and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.config import (
    EdgeOptions,
    render_config,
    server_args,
    strip_servers,
)
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server

GOLDEN = Path(__file__).parent / "golden"
OPTS = EdgeOptions(dir=Path("/var/lib/shipyard/edge"), http_port=8080)

WEB = Backend(
    name="web",
    mode="http",
    internal_port=10001,
    public_hosts=("Example.com", "www.example.com"),
    health_path="/healthz",
    health_host="example.com",
    servers=(
        Server("web-r1-a", "127.0.0.1", 9001),
        Server("web-r1-b", "127.0.0.1", 9002, "drain"),
    ),
)
DB = Backend(name="cache", mode="tcp", internal_port=10002)
API = Backend(
    name="api",
    mode="http",
    internal_port=10003,
    public_hosts=("api.example.com",),
    servers=(Server("api-r4-a", "127.0.0.1", 9003, "maint"),),
)
FULL = RoutingTable((WEB, DB, API))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SHIPYARD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize(
    ("name", "table"),
    [("full.cfg", FULL), ("empty.cfg", RoutingTable()), ("private_only.cfg", RoutingTable((DB,)))],
)
def test_golden(name: str, table: RoutingTable) -> None:
    check_golden(name, render_config(table, OPTS))


@pytest.mark.parametrize(("name", "table"), [("full", FULL), ("empty", RoutingTable())])
def test_rendered_config_passes_haproxy_check(
    tmp_path: Path, name: str, table: RoutingTable
) -> None:
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if not haproxy:
        pytest.skip("haproxy binary not installed")
    opts = EdgeOptions(dir=tmp_path)
    (tmp_path / "server-state").write_text("1\n")
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(render_config(table, opts))
    proc = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


def test_server_args_encode_state() -> None:
    check = "check inter 2s fall 3 rise 2"
    assert server_args(WEB, Server("a", "127.0.0.1", 9001)) == f"127.0.0.1:9001 {check} weight 1"
    assert server_args(WEB, Server("a", "10.0.0.2", 80, "drain")) == f"10.0.0.2:80 {check} weight 0"
    assert server_args(DB, Server("a", "127.0.0.1", 5, "maint")).endswith("weight 1 disabled")


def test_server_lines_use_server_args() -> None:
    text = render_config(FULL, OPTS)
    for backend in FULL.backends:
        for server in backend.servers:
            assert f"    server {server.name} {server_args(backend, server)}\n" in text


def test_unknown_host_gets_404_naming_the_host() -> None:
    text = render_config(FULL, OPTS)
    assert (
        "    http-request return status 404 content-type text/plain lf-string "
        "\"No service is routed for host '%[var(txn.host)]'.\\n\" unless host_api || host_web\n"
    ) in text
    assert "use_backend be_cache" not in text  # private: only its internal listener
    assert "frontend fe_int_cache from d_tcp\n    bind 127.0.0.1:10002\n" in text


def test_health_check_only_with_path() -> None:
    text = render_config(FULL, OPTS)
    web = text.split("\nbackend be_web")[1]
    api = text.split("\nbackend be_api")[1].split("frontend")[0]
    assert "http-check send meth GET uri /healthz hdr Host example.com" in web
    assert "option httpchk" not in api


def test_strip_servers_ignores_only_server_lines() -> None:
    moved = RoutingTable((WEB, DB, API.__class__(**{**API.__dict__, "servers": ()})))
    assert strip_servers(render_config(FULL, OPTS)) == strip_servers(render_config(moved, OPTS))
    other_host = RoutingTable((WEB, DB, API.__class__(**{**API.__dict__, "public_hosts": ()})))
    assert strip_servers(render_config(FULL, OPTS)) != strip_servers(
        render_config(other_host, OPTS)
    )


@pytest.mark.parametrize(
    "table",
    [
        RoutingTable((Backend("Bad Name", "http", 1),)),
        RoutingTable((Backend("a", "http", 1, public_hosts=("x.com\n  bind :1",)),)),
        RoutingTable((Backend("a", "http", 1, health_path="/x y"),)),
        RoutingTable((Backend("a", "http", 1), Backend("b", "http", 1))),
        RoutingTable((Backend("a", "http", 1, ("h.io",)), Backend("b", "http", 2, ("H.io",)))),
    ],
)
def test_unsafe_or_ambiguous_tables_are_rejected(table: RoutingTable) -> None:
    with pytest.raises(EdgeError):
        render_config(table, OPTS)


SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
1162            master          5 [failed: 1]   0d00h02m07s     2.6.12
# workers
1271            worker          1               0d00h00m00s     2.6.12
# old workers
1233            worker          3               0d00h00m43s     2.6.12
# programs

"""

SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 be_web 1 s1 127.0.0.1 2 0 1 1 623 17 2 0 6 0 0 0 - 19001 - 0 0 - - 0
3 be_web 2 s2 127.0.0.1 2 0 0 0 622 17 2 0 6 0 0 0 - 19002 - 0 0 - - 0
3 be_web 3 s3 127.0.0.1 2 8 1 1 622 17 2 0 6 0 0 0 - 19003 - 0 0 - - 0
3 be_web 4 s4 127.0.0.1 0 5 1 1 622 17 2 0 6 0 0 0 - 19004 - 0 0 - - 0
3 be_web 5 s5 127.0.0.1 2 4 1 1 622 17 2 0 6 0 0 0 - 19005 - 0 0 - - 0

"""


def test_parse_show_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "send", lambda *a, **k: SHOW_PROC)
    info = runtime.show_proc(Path("m.sock"))
    assert info == runtime.ProcInfo(1162, 1, (1271,), (1233,), reloads=5)


def test_parse_servers_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "send", lambda *a, **k: SERVERS_STATE)
    servers = runtime.show_servers_state(Path("a.sock"), "be_web")
    assert servers["s1"].port == 19001 and servers["s1"].in_state("ready")
    assert servers["s2"].in_state("drain") is False  # weight 0 alone is not the drain flag
    assert not servers["s2"].in_state("ready")
    assert servers["s3"].in_state("drain")
    assert servers["s4"].in_state("maint")
    assert servers["s5"].in_state("ready")  # CMAINT alone is only "disabled in the file"


def test_send_translates_socket_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="did not answer"):
        runtime.send(tmp_path / "missing.sock", "show info", timeout=0.5)
