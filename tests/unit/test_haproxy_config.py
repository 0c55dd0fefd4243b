"""Golden-file tests for the HAProxy config and map renderer, plus runtime answer parsing.

Regenerate the golden files with ``SHIPYARD_UPDATE_GOLDEN=1`` set when running this file,
and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.drivers.haproxy import runtime
from shipyard.drivers.haproxy.config import (
    HOLD_LUA,
    EdgeOptions,
    render_config,
    render_maps,
    server_args,
    strip_servers,
)
from shipyard.drivers.haproxy.edge import bound_ports, check_message
from shipyard.drivers.haproxy.layout import Layout, compact, initial_layout, plan_layout
from shipyard.drivers.haproxy.view import DUPLICATE, desired
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server

GOLDEN = Path(__file__).parent / "golden"
OPTS = EdgeOptions(dir=Path("/var/lib/shipyard/edge"), http_port=8080, pool_spare=2)
BASED = EdgeOptions(dir=OPTS.dir, pool_spare=2, internal_port_base=21000)

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


def layout_for(table: RoutingTable, opts: EdgeOptions = OPTS) -> Layout:
    """The layout a fresh edge starts with for ``table``."""
    planned = plan_layout(initial_layout(opts.policy), table, opts.policy)
    return compact(planned, table, opts.policy)


def render(table: RoutingTable, opts: EdgeOptions = OPTS) -> str:
    return render_config(table, layout_for(table, opts), opts)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SHIPYARD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize(
    ("name", "table", "opts"),
    [
        ("full.cfg", FULL, OPTS),
        ("empty.cfg", RoutingTable(), OPTS),
        ("private_only.cfg", RoutingTable((DB,)), OPTS),
        ("port_base.cfg", RoutingTable((WEB, DB, API)), BASED),
    ],
)
def test_golden(name: str, table: RoutingTable, opts: EdgeOptions) -> None:
    check_golden(name, render(table, opts))


def test_golden_maps() -> None:
    maps = render_maps(desired(FULL, layout_for(FULL)).maps)
    for name, text in maps.items():
        check_golden(f"full.{name}.map", text)


@pytest.mark.parametrize(
    ("name", "table", "opts"),
    [("full", FULL, OPTS), ("empty", RoutingTable(), OPTS), ("based", FULL, BASED)],
)
def test_rendered_config_passes_haproxy_check(
    tmp_path: Path, name: str, table: RoutingTable, opts: EdgeOptions
) -> None:
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if not haproxy:
        pytest.skip("haproxy binary not installed")
    opts = EdgeOptions(
        dir=tmp_path, internal_port_base=opts.internal_port_base, pool_spare=opts.pool_spare
    )
    (tmp_path / "server-state").write_text("1\n")
    opts.lua_path.write_text(HOLD_LUA)
    layout = layout_for(table, opts)
    for map_name, text in render_maps(desired(table, layout).maps).items():
        opts.map_path(map_name).write_text(text)
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(render_config(table, layout, opts))
    proc = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


def test_server_args_encode_state() -> None:
    # checks, and the idle-connection pool a dynamic server otherwise lacks
    check = "check inter 2s fall 3 rise 2 pool-max-conn -1 pool-purge-delay 5s"
    assert server_args(WEB, Server("a", "127.0.0.1", 9001)) == f"127.0.0.1:9001 {check} weight 1"
    assert server_args(WEB, Server("a", "10.0.0.2", 80, "drain")) == f"10.0.0.2:80 {check} weight 0"
    assert server_args(DB, Server("a", "127.0.0.1", 5, "maint")).endswith("weight 1 disabled")
    assert server_args(None, Server("a", "::1", 5)).startswith("[::1]:5 ")


def test_server_lines_use_server_args() -> None:
    text = render(FULL)
    for backend in FULL.backends:
        for server in backend.servers:
            assert f"    server {server.name} {server_args(backend, server)}\n" in text


def test_servers_sit_in_their_service_slot() -> None:
    layout = layout_for(FULL)
    assert layout.slots == {"api": "be_c0", "cache": "be_t0", "web": "be_h0"}
    text = render_config(FULL, layout, OPTS)
    web = text.split("backend be_h0 from d_hchk\n")[1].split("\n\n")[0]
    servers = [line for line in web.splitlines() if line.startswith("    server ")]
    assert servers == [f"    server {s.name} {server_args(WEB, s)}" for s in WEB.servers]


def test_every_backend_holds_requests_only_when_its_service_asks() -> None:
    """hold.map names the slots whose requests wait for a usable server (none: 503 at once)."""
    table = RoutingTable(tuple(replace(b, hold_s=20.0) if b.name == "web" else b
                               for b in FULL.backends))  # fmt: skip
    layout = layout_for(table)
    assert desired(table, layout).maps["hold"] == {"be_h0": "20000"}
    assert desired(FULL, layout).maps["hold"] == {}
    text = render_config(table, layout, OPTS)
    hold = f"{OPTS.dir}/hold.map"
    kinds = (("be_h0 from d_hchk", "http-request"), ("be_t0 from d_tcp", "tcp-request content"))
    for slot, rules in kinds:
        section = text.split(f"backend {slot}\n")[1].split("\n\n")[0]
        assert (
            f"    {rules} set-var(txn.shipyard_hold) be_name,map({hold}) if {{ nbsrv eq 0 }}"
            in section
        )
        assert f"    {rules} lua.shipyard_hold if {{ var(txn.shipyard_hold) -m found }}" in section
    assert f"    lua-load {OPTS.dir}/hold.lua\n" in text


def test_unknown_host_gets_404_naming_the_host_and_no_line_per_host() -> None:
    text = render(FULL)
    hosts = f"{OPTS.dir}/hosts.map"
    assert (
        "    http-request return status 404 content-type text/plain lf-string "
        "\"No service is routed for host '%[var(txn.host)]'.\\n\""
        f" if !{{ var(txn.host),map({hosts}) -m found }}\n"
        f"    use_backend %[var(txn.host),map({hosts})]\n"
    ) in text
    assert "example.com" not in text  # hosts live in hosts.map only
    many = RoutingTable(
        tuple(Backend(f"s{i}", "http", 20000 + i, (f"s{i}.test",)) for i in range(600))
    )
    assert max(len(line.split()) for line in render(many).splitlines()) < 64


def test_private_service_gets_only_a_port() -> None:
    maps = desired(FULL, layout_for(FULL)).maps
    assert "be_t0" not in maps["hosts"].values()
    assert maps["ports"]["10002"] == "be_t0"
    assert maps["hosts"] == {
        "api.example.com": "be_c0",
        "example.com": "be_h0",
        "www.example.com": "be_h0",
    }


def test_health_check_comes_from_maps() -> None:
    text = render(FULL)
    assert (
        f"    http-check send meth GET uri-lf %[be_name,map({OPTS.dir}/health.map,/)] ver HTTP/1.1"
        f" hdr Host %[be_name,map({OPTS.dir}/checkhost.map,localhost)]\n"
    ) in text
    maps = desired(FULL, layout_for(FULL)).maps
    assert maps["health"] == {"be_h0": "/healthz"}
    assert maps["checkhost"] == {"be_h0": "example.com"}
    assert "backend be_c0 from d_http\n" in text  # api: no path, TCP connect check


def test_internal_ports_are_bound_as_ranges() -> None:
    assert "    bind 127.0.0.1:10001-10003\n" in render(FULL)
    based = render(FULL, BASED)
    assert "    bind 127.0.0.1:21000-21063\n" in based
    assert "    bind 127.0.0.1:10001-10003\n" in based  # outside the region: bound exactly
    assert bound_ports(based) == {8080, *range(21000, 21064), 10001, 10002, 10003}
    assert "fe_internal" not in render(RoutingTable())  # a frontend without bind would warn


def test_strip_servers_ignores_only_server_lines() -> None:
    layout = layout_for(FULL)
    moved = RoutingTable((WEB, DB, API.__class__(**{**API.__dict__, "servers": ()})))
    assert strip_servers(render_config(FULL, layout, OPTS)) == strip_servers(
        render_config(moved, layout, OPTS)
    )
    other_host = RoutingTable((WEB, DB, API.__class__(**{**API.__dict__, "public_hosts": ()})))
    assert render_config(other_host, layout, OPTS) == render_config(FULL, layout, OPTS)


@pytest.mark.parametrize(
    "table",
    [
        RoutingTable((Backend("Bad Name", "http", 1),)),
        RoutingTable((Backend("a", "http", 1, public_hosts=("x.com\n  bind :1",)),)),
        RoutingTable((Backend("a", "http", 1, health_path="/x y"),)),
        RoutingTable((Backend("a", "http", 1), Backend("b", "http", 1))),
        RoutingTable((Backend("a", "http", 1, ("h.io",)), Backend("b", "http", 2, ("H.io",)))),
        RoutingTable((Backend("a", "http", 0),)),
        RoutingTable((Backend("a", "http", 1, servers=(Server("s", "localhost", 80),)),)),
        RoutingTable((Backend("a", "http", 1, servers=(Server("s[1]", "127.0.0.1", 80),)),)),
        RoutingTable((Backend("a", "http", 1, servers=(Server("s", "127.0.0.1", 0),)),)),
        RoutingTable((Backend("a", "tcp", 1, ("h.io",)),)),
    ],
)
def test_unsafe_or_ambiguous_tables_are_rejected(table: RoutingTable) -> None:
    with pytest.raises(EdgeError):
        render_config(table, Layout(slots={b.name: "be_c0" for b in table.backends}), OPTS)


def test_unsafe_edge_directory_is_rejected() -> None:
    with pytest.raises(EdgeError, match="edge directory"):
        render(FULL, EdgeOptions(dir=Path("/tmp/my edge")))


def test_check_message_keeps_haproxys_words() -> None:
    output = (
        "[NOTICE]   (18037) : haproxy version is 2.6.12-1+deb12u4\n"
        "[ALERT]    (18037) : config : parsing [haproxy.cfg:2] : 'bind' : invalid port '70000'\n"
        "[ALERT]    (18037) : config : Error(s) found in configuration file : haproxy.cfg\n"
        "[ALERT]    (18037) : config : Fatal errors found in configuration.\n"
    )
    config = "frontend x\n    bind 127.0.0.1:70000\n"
    assert check_message(output, config, 1) == (
        "[ALERT] parsing [haproxy.cfg:2] : 'bind' : invalid port '70000'"
        " (line 2: bind 127.0.0.1:70000)"
    )
    assert check_message("", config, 1) == "haproxy -c exited with code 1 and printed nothing"


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
3 be_h0 1 s1 127.0.0.1 2 0 1 1 623 17 2 0 6 0 0 0 - 19001 - 0 0 - - 0
3 be_h0 2 s2 127.0.0.1 2 0 0 0 622 17 2 0 6 0 0 0 - 19002 - 0 0 - - 0
3 be_h0 3 s3 127.0.0.1 2 8 1 1 622 17 2 0 6 0 0 0 - 19003 - 0 0 - - 0
3 be_h0 4 s4 127.0.0.1 0 5 1 1 622 17 2 0 6 0 0 0 - 19004 - 0 0 - - 0
3 be_h0 5 s5 127.0.0.1 2 4 1 1 622 17 2 0 6 0 0 0 - 19005 - 0 0 - - 0
4 be_t1 1 s1 127.0.0.1 2 0 1 1 622 17 2 0 6 0 0 0 - 19006 - 0 0 - - 0

"""


def test_parse_show_proc() -> None:
    info = runtime.parse_show_proc(SHOW_PROC)
    assert info == runtime.ProcInfo(1162, 1, (1271,), (1233,), reloads=5)


def test_parse_servers_state() -> None:
    backends = runtime.parse_servers_state(SERVERS_STATE)
    assert set(backends) == {"be_h0", "be_t1"} and backends["be_t1"]["s1"].port == 19006
    servers = backends["be_h0"]
    assert servers["s1"].port == 19001 and servers["s1"].in_state("ready")
    assert servers["s2"].in_state("drain") is False  # weight 0 alone is not the drain flag
    assert not servers["s2"].in_state("ready") and servers["s2"].state() == "other"
    assert servers["s3"].in_state("drain")
    assert servers["s4"].in_state("maint")
    assert servers["s5"].in_state("ready")  # CMAINT alone is only "disabled in the file"


def test_parse_maps() -> None:
    text = "0x55d0c1e0 a.test be_h0\n0x55d0c1e1 b.test be_c1\n\n"
    assert runtime.parse_map(text, "hosts.map") == [("a.test", "be_h0"), ("b.test", "be_c1")]
    with pytest.raises(EdgeError):
        runtime.parse_map("Unknown map identifier. Please use #<id> or <file>.\n", "x.map")
    found = 'type=str, case=sensitive, found=yes, idx=tree, key="b", value="be_h1", type="str"\n'
    assert runtime.parse_get_map(found) == "be_h1"
    assert runtime.parse_get_map("type=str, case=sensitive, found=no\n") is None


def test_show_map_marks_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = "0x1 a.test be_h0\n0x2 a.test be_h0\n0x3 b.test be_h1\n\n"
    monkeypatch.setattr(runtime, "send", lambda *a, **k: answer)
    assert runtime.show_map(Path("a.sock"), Path("hosts.map")) == {
        "a.test": DUPLICATE,
        "b.test": "be_h1",
    }


def test_cli_arguments_are_escaped() -> None:
    assert runtime.arg("/a;b\\c") == "/a\\;b\\\\c"
    with pytest.raises(EdgeError):
        runtime.arg("a b")


def test_send_translates_socket_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="did not answer"):
        runtime.send(tmp_path / "missing.sock", "show info", timeout=0.5)
    with pytest.raises(EdgeError, match="did not answer"):
        runtime.AdminClient(tmp_path / "missing.sock", timeout=0.5).command("show info")
