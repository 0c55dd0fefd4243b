"""The HAProxy runtime API as functions: admin socket commands and master CLI commands.

The command helpers accept an :class:`AdminClient` or a socket ``Path`` (one connection per
command: what tests use to observe HAProxy independently of the edge's pool). The sockets are
spoken to by transport.py (the pooled, prompt-mode :class:`AdminClient`; :func:`send`, one
connection per command, also for the master CLI); answers are parsed by the pure ``parse_*``
functions of parse.py. Both are re-exported here. Every socket or protocol failure becomes an
EdgeError.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from shipyard.clock import Clock, poll_while
from shipyard.drivers.haproxy.parse import (
    ADMF_DRAIN,
    ADMF_FMAINT,
    ADMF_MAINT,
    ProcInfo,
    RuntimeServer,
    parse_get_map,
    parse_info,
    parse_map,
    parse_servers_state,
    parse_show_proc,
    parse_stat,
)
from shipyard.drivers.haproxy.transport import PROMPT, AdminClient, send
from shipyard.drivers.haproxy.view import DUPLICATE
from shipyard.errors import EdgeError
from shipyard.route.table import ServerState, ServerStats

__all__ = [
    "ADMF_DRAIN",
    "ADMF_FMAINT",
    "ADMF_MAINT",
    "PAYLOAD_LIMIT",
    "PROMPT",
    "Admin",
    "AdminClient",
    "ProcInfo",
    "RuntimeServer",
    "add_map",
    "add_server",
    "arg",
    "del_map",
    "del_server",
    "del_servers",
    "dump_servers_state",
    "enable_health",
    "get_map",
    "parse_get_map",
    "parse_info",
    "parse_map",
    "parse_servers_state",
    "parse_show_proc",
    "parse_stat",
    "reload",
    "send",
    "servers_state",
    "set_map",
    "set_server_state",
    "set_weight",
    "show_info",
    "show_map",
    "show_proc",
    "show_servers_state",
    "show_stat",
    "worker_pid",
]

PAYLOAD_LIMIT = 500  # entries per ``add map`` payload


Admin = AdminClient | Path


def _send(admin: Admin, command: str, timeout: float = 5.0) -> str:
    if isinstance(admin, AdminClient):
        return admin.command(command, timeout)
    return send(admin, command, timeout)


def arg(value: str) -> str:
    """Escape a CLI argument: ``;`` separates commands and ``\\`` escapes (values never hold
    spaces or newlines: validate_table sees to it)."""
    if any(c.isspace() for c in value):
        raise EdgeError(f"value {value!r} cannot be sent on the HAProxy CLI")
    return value.replace("\\", "\\\\").replace(";", "\\;")


def _expect(answer: str, command: str, *accepted: str) -> None:
    text = answer.strip()
    if text in accepted or any(text.startswith(a) for a in accepted if a):
        return
    raise EdgeError(f"HAProxy refused {command!r}: {text}", fields={"command": command})


# -- admin socket commands --------------------------------------------------------------------


def show_info(admin: Admin, timeout: float = 5.0) -> dict[str, str]:
    return parse_info(_send(admin, "show info", timeout))


def worker_pid(admin: Admin, timeout: float = 5.0) -> int:
    pid = show_info(admin, timeout).get("Pid", "")
    if not pid.isdigit():
        raise EdgeError("HAProxy 'show info' has no Pid")
    return int(pid)


def show_stat(
    admin: Admin, proxy: str | None = None, timeout: float = 5.0
) -> dict[tuple[str, str], ServerStats]:
    """Server rows only (``show stat <proxy|-1> 4 -1``): all backends in one answer, or one."""
    return parse_stat(_send(admin, f"show stat {proxy or -1} 4 -1", timeout))


def servers_state(
    admin: Admin, backend: str | None = None, timeout: float = 5.0
) -> dict[str, dict[str, RuntimeServer]]:
    """``show servers state [backend]``: backend -> server -> row (raises if unknown)."""
    command = f"show servers state {backend}" if backend else "show servers state"
    return parse_servers_state(_send(admin, command, timeout), f" {backend}" if backend else "")


def show_servers_state(
    admin: Admin, backend: str, timeout: float = 5.0
) -> dict[str, RuntimeServer]:
    """The servers the running worker has in ``backend`` (raises EdgeError if unknown)."""
    return servers_state(admin, backend, timeout).get(backend, {})


def dump_servers_state(admin: Admin, timeout: float = 5.0) -> str:
    """``show servers state`` for all backends, in the format server-state-file expects."""
    text = _send(admin, "show servers state", timeout)
    if not text.startswith("1\n"):
        raise EdgeError(f"unexpected 'show servers state' answer: {text[:200]!r}")
    return text


def add_server(admin: Admin, backend: str, server: str, args: str, timeout: float = 5.0) -> None:
    """Add a dynamic server; HAProxy creates it in maintenance (FMAINT)."""
    command = f"add server {backend}/{server} {args}"
    _expect(_send(admin, command, timeout), command, "New server registered")


def set_server_state(
    admin: Admin, backend: str, server: str, state: ServerState, timeout: float = 5.0
) -> None:
    command = f"set server {backend}/{server} state {state}"
    _expect(_send(admin, command, timeout), command, "")


def set_weight(admin: Admin, backend: str, server: str, weight: int, timeout: float = 5.0) -> None:
    command = f"set server {backend}/{server} weight {weight}"
    _expect(_send(admin, command, timeout), command, "")


def enable_health(admin: Admin, backend: str, server: str, timeout: float = 5.0) -> None:
    command = f"enable health {backend}/{server}"
    _expect(_send(admin, command, timeout), command, "")


def del_servers(
    admin: Admin,
    servers: Iterable[tuple[str, str]],
    clock: Clock,
    *,
    grace: float = 2.0,
    timeout: float = 10.0,
) -> None:
    """Remove servers: maint (no new requests), let in-flight ones finish for up to ``grace``
    seconds (one ``show stat`` per poll for all of them), cut what is left (``shutdown
    sessions``), then retry ``del server`` until HAProxy agrees each has no connection left,
    or ``timeout`` passes."""
    pending = list(dict.fromkeys(servers))
    if not pending:
        return
    for backend, server in pending:
        set_server_state(admin, backend, server, "maint")
    busy = pending

    def still_busy() -> list[tuple[str, str]]:
        proxies = {b for b, _ in busy}
        stats = show_stat(admin, next(iter(proxies)) if len(proxies) == 1 else None)
        return [ref for ref in busy if ref in stats and not stats[ref].idle]

    busy = poll_while(clock, still_busy, bool, timeout_s=grace, interval_s=0.05)
    for backend, server in busy:
        _send(admin, f"shutdown sessions server {backend}/{server}")
    deadline = clock.monotonic() + timeout
    for backend, server in pending:
        command = f"del server {backend}/{server}"

        def refused() -> str:
            answer = _send(admin, command).strip()  # noqa: B023 - called right here
            done = answer.startswith(("Server deleted", "No such server"))
            return "" if done else answer

        left = max(0.0, deadline - clock.monotonic())
        answer = poll_while(clock, refused, bool, timeout_s=left, interval_s=0.1)
        if answer:
            raise EdgeError(f"HAProxy refused {command!r}: {answer}", fields={"command": command})


def del_server(
    admin: Admin, backend: str, server: str, clock: Clock, *, grace: float = 2.0
) -> None:
    del_servers(admin, [(backend, server)], clock, grace=grace)


def show_map(admin: Admin, map_file: Path, timeout: float = 5.0) -> dict[str, str]:
    """The map's entries; a key present more than once maps to view.DUPLICATE."""
    out: dict[str, str] = {}
    for key, value in parse_map(_send(admin, f"show map {map_file}", timeout), str(map_file)):
        out[key] = DUPLICATE if key in out else value
    return out


def get_map(admin: Admin, map_file: Path, key: str, timeout: float = 5.0) -> str | None:
    return parse_get_map(_send(admin, f"get map {map_file} {arg(key)}", timeout))


def add_map(admin: Admin, map_file: Path, entries: list[tuple[str, str]]) -> None:
    """Add entries (new keys): one command, or payloads of up to PAYLOAD_LIMIT entries."""
    if len(entries) == 1:
        key, value = entries[0]
        command = f"add map {map_file} {arg(key)} {arg(value)}"
        _expect(_send(admin, command), command, "")
        return
    for start in range(0, len(entries), PAYLOAD_LIMIT):
        chunk = entries[start : start + PAYLOAD_LIMIT]
        for key, value in chunk:  # a payload line is "key value": no whitespace inside
            arg(key)
            arg(value)
        body = "".join(f"{key} {value}\n" for key, value in chunk)
        command = f"add map {map_file} <<\n{body}"
        _expect(_send(admin, command), f"add map {map_file} <<", "")


def set_map(admin: Admin, map_file: Path, key: str, value: str) -> None:
    command = f"set map {map_file} {arg(key)} {arg(value)}"
    _expect(_send(admin, command), command, "")


def del_map(admin: Admin, map_file: Path, key: str) -> None:
    command = f"del map {map_file} {arg(key)}"
    _expect(_send(admin, command), command, "", "Key not found")


# -- master CLI -------------------------------------------------------------------------------


def show_proc(master: Path, timeout: float = 5.0) -> ProcInfo:
    try:
        return parse_show_proc(send(master, "show proc", timeout))
    except EdgeError as exc:
        raise EdgeError(f"{exc.message} (master CLI {master})", fields=exc.fields) from exc


def reload(master: Path, timeout: float = 5.0) -> None:
    """Ask the master to re-exec with the config file. 2.6 closes the CLI without an answer."""
    send(master, "reload", timeout)
