"""Who holds a TCP port on this machine: for errors that name the process in the way."""

from __future__ import annotations

import socket

import psutil


def listening_holder(port: int) -> str | None:
    """``"name (pid N: command line)"`` of a process listening on TCP ``port`` (any address),
    "another process" when the kernel hides it from us, or None when nothing listens."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        conns = []
    for conn in conns:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.pid is None:
            return "another process"
        try:
            proc = psutil.Process(conn.pid)
            command = " ".join(proc.cmdline())[:200]
            return f"{proc.name()} (pid {conn.pid}: {command})"
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return f"pid {conn.pid}"
    return None


def bind_exclusive(address: str, port: int) -> socket.socket:
    """A listening socket on ``address:port`` WITHOUT SO_REUSEPORT (so no other process can
    share the port, and none already holds it); OSError if the port is taken."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no holder
        sock.bind((address, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def port_free(address: str, port: int) -> bool:
    """Nothing else listens on ``address:port`` (checked by binding it exclusively)."""
    try:
        bind_exclusive(address, port).close()
    except OSError:
        return False
    return True
