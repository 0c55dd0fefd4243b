"""Property: whatever Blueprint the validator accepts, the edge and the runtime accept too.

Random Blueprints (names, types, runtimes, domains, env vars drawn from wide alphabets with
control characters and NUL, blank and odd commands, health check paths, instance counts) are
either refused with file:line:col, or accepted; an accepted one must render an HAProxy config
that `haproxy -c` passes, give processes an environment Popen and execve take, and commands
bash can be handed. Commands are not checked for shell syntax: Render does not either, and a
syntax error shows in the deploy log like any other failing command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shipyard.blueprint import LoadedBlueprint, ServiceSpec, parse_blueprint
from shipyard.drivers.haproxy.config import HOLD_LUA, EdgeOptions, render_config, render_maps
from shipyard.drivers.haproxy.layout import compact, initial_layout, plan_layout
from shipyard.drivers.haproxy.view import desired
from shipyard.drivers.local.process import BASH, LocalProcesses
from shipyard.errors import BlueprintError
from shipyard.route.table import Backend, RoutingTable, Server
from shipyard.run.runtime import ProcessSpec

HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
PROBLEM_LINE = re.compile(r"render\.yaml:\d+:\d+: ")

# Wide alphabets: every C0 control and NUL, ASCII, Latin-1, some of the BMP (no surrogates:
# YAML cannot carry them, and libyaml refuses their escapes). Each field has values the
# validator must accept, the edgier the better, and wild ones it may refuse.
WIDE = st.characters(min_codepoint=0, max_codepoint=0x3000, exclude_categories=["Cs"])
REFUSED_IN_VALUES = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r")
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "name": (label, st.text(WIDE, max_size=12)),
    "domain": (
        st.one_of(
            st.lists(label, min_size=2, max_size=4).map(".".join),
            st.builds(lambda a: f"{a.upper()}.Example.COM.", label),
            st.just("localhost"),
        ),
        st.one_of(
            st.builds(lambda a: f"*.{a}.example.com", label),
            st.sampled_from(["intranet", "1.2.3.4", "a.localhost", "-a-.com", "a..b", "é.fr"]),
            st.text(WIDE, max_size=20),
        ),
    ),
    "key": (
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        st.text(WIDE, max_size=10),
    ),
    "value": (
        st.one_of(
            st.text(st.characters(codec="utf-8", exclude_characters=REFUSED_IN_VALUES)),
            st.integers(),
            st.booleans(),
            st.floats(allow_nan=False),
        ),
        st.text(WIDE, max_size=30),
    ),
    "command": (
        st.one_of(
            st.sampled_from(["python app.py", "node server.js", "echo 'unbalanced"]),
            st.text(st.characters(codec="utf-8", exclude_characters="\0")).filter(str.strip),
        ),
        st.one_of(st.sampled_from(["", "   ", "\t\n", "a\0b"]), st.text(WIDE, max_size=30)),
    ),
    "path": (
        st.builds(lambda s: "/" + s, st.text("abcXYZ019._~!&()*+,;=:@%/?-", max_size=40)),
        st.one_of(
            st.sampled_from(["healthz", "/a b", "/a#b", "/é", "/a\nb", ""]),
            st.text(WIDE, max_size=15),
        ),
    ),
    "count": (st.integers(1, 100), st.integers(-1, 120)),
}


@st.composite
def services(draw: st.DrawFn, wild: bool) -> dict[str, Any]:
    """One service; with ``wild``, each field is wild one time in four."""

    def pick(field: str) -> Any:
        valid, odd = FIELDS[field]
        return draw(odd if wild and draw(st.integers(0, 3)) == 0 else valid)

    kind = draw(st.sampled_from(["web", "pserv", "worker"]))
    svc: dict[str, Any] = {
        "type": kind,
        "name": pick("name"),
        "runtime": draw(st.sampled_from(["python", "node"])),
    }
    if not wild or draw(st.integers(0, 9)):  # wild: now and then no startCommand at all
        svc["startCommand"] = pick("command")
    if draw(st.booleans()):
        svc["buildCommand"] = pick("command")
    if draw(st.booleans()):
        svc["numInstances"] = pick("count")
    if kind == "web" and draw(st.booleans()):
        svc["domains"] = [pick("domain") for _ in range(draw(st.integers(0, 3)))]
    if kind == "web" and draw(st.booleans()):
        svc["healthCheckPath"] = pick("path")
    pairs = [(pick("key"), pick("value")) for _ in range(draw(st.integers(0, 4)))]
    svc["envVars"] = [{"key": key, "value": value} for key, value in pairs]
    return svc


blueprints = st.booleans().flatmap(
    lambda wild: st.lists(services(wild), min_size=1, max_size=3).map(
        lambda svcs: yaml.safe_dump({"services": svcs}, allow_unicode=True)
    )
)


@pytest.mark.skipif(not HAPROXY, reason="haproxy binary not installed")
@settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=blueprints)
def test_what_the_validator_accepts_the_edge_and_runtime_accept(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    try:
        loaded = parse_blueprint(text, filename="render.yaml", kind="render")
    except BlueprintError as exc:
        event("refused")
        head, *lines = exc.message.splitlines()
        assert re.fullmatch(r"render\.yaml: \d+ problems?:", head), exc.message
        assert len(lines) == len(exc.fields["problems"])
        for line in lines:
            assert PROBLEM_LINE.match(line), line
        return
    event(f"accepted, {len(loaded.services)} services")
    tmp = tmp_path_factory.mktemp("accepted")
    check_edge(loaded, tmp)
    for spec in loaded.services:
        check_runtime(spec, tmp)


def check_edge(loaded: LoadedBlueprint, tmp: Path) -> None:
    """The config for one server per service, with the service's hosts and health check."""
    backends = []
    for port, spec in enumerate(loaded.services, start=20000):
        if spec.type == "worker":
            continue
        web = spec.type == "web"
        public = f"{spec.name}.localhost"
        backends.append(
            Backend(
                name=spec.name,
                mode="http" if web else "tcp",
                internal_port=port,
                public_hosts=(public, *spec.domains) if web else (),
                health_path=spec.health_check_path if web else None,
                health_host=public if web else spec.name,
                servers=(Server(f"{spec.name}-r1-a", "127.0.0.1", port + 1000),),
                hold_s=5.0,
            )
        )
    table = RoutingTable(tuple(sorted(backends, key=lambda b: b.name)))
    opts = EdgeOptions(dir=tmp, internal_port_base=20000, pool_spare=1)
    layout = compact(
        plan_layout(initial_layout(opts.policy), table, opts.policy), table, opts.policy
    )
    (tmp / "server-state").write_text("1\n")
    opts.lua_path.write_text(HOLD_LUA)
    for name, body in render_maps(desired(table, layout).maps).items():
        opts.map_path(name).write_text(body)
    opts.config_path.write_text(render_config(table, layout, opts))
    assert HAPROXY
    proc = subprocess.run(
        [HAPROXY, "-c", "-f", str(opts.config_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


def check_runtime(spec: ServiceSpec, tmp: Path) -> None:
    """The service's literal env reaches a process; each command can be handed to bash."""
    env = {str(e.key): e.value for e in spec.env_vars if e.value is not None}
    process = ProcessSpec(command="true", cwd=tmp, env=env, log_path=tmp / "log")
    assert LocalProcesses().run(process, timeout_s=5) == 0
    for command in (spec.start_command, spec.build_command, spec.pre_deploy_command):
        if command is not None:  # -n: parse only; a syntax error (exit 2) is the app's own
            subprocess.run([BASH, "-n", "-c", command], capture_output=True, check=False)
