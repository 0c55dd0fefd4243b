"""Why HAProxy would refuse a config, or did: ``haproxy -c`` on a scratch copy of the config and
maps (its messages trimmed, file names as the user knows them), and the internal ports a
config binds (a reload that fails may have found one in use by another process).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading

from shipyard.drivers.haproxy.config import EdgeOptions, render_config, render_maps
from shipyard.drivers.haproxy.layout import Layout
from shipyard.drivers.haproxy.view import desired
from shipyard.errors import EdgeError
from shipyard.route.table import RoutingTable

_BIND = re.compile(r"^    bind 127\.0\.0\.1:(\d+)(?:-(\d+))?$", re.MULTILINE)
_CHECK_PREFIX = re.compile(r"^\[(ALERT|WARNING)\]\s*\(\d+\)\s*:\s*(?:config\s*:\s*)?")
_CHECK_NOISE = ("Error(s) found in configuration file", "Fatal errors found in configuration")


def check_config(haproxy_bin: str, opts: EdgeOptions, table: RoutingTable, layout: Layout) -> None:
    """``haproxy -c`` on the config and maps (copies in a scratch directory); raises
    EdgeError with HAProxy's own messages, file names as the user knows them. The Lua file the
    config loads must be in ``opts.dir`` already."""
    scratch = opts.dir / f".check.{os.getpid()}.{threading.get_ident()}"
    scratch.mkdir(exist_ok=True)
    cfg = scratch / "haproxy.cfg"
    try:
        text = render_config(table, layout, opts, map_dir=scratch, validate=False)
        for name, content in render_maps(desired(table, layout).maps).items():
            opts.map_path(name, scratch).write_text(content)
        cfg.write_text(text)
        try:
            proc = subprocess.run(
                [haproxy_bin, "-c", "-f", str(cfg)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EdgeError(f"could not run {haproxy_bin} -c: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0:
        output = f"{proc.stderr}\n{proc.stdout}".replace(str(cfg), "haproxy.cfg")
        output = output.replace(str(scratch), str(opts.dir))
        message = check_message(output, text.replace(str(scratch), str(opts.dir)),
                                proc.returncode)  # fmt: skip
        raise EdgeError(f"HAProxy rejected the generated config: {message}")


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
