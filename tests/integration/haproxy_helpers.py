"""Real backends and HTTP helpers for the HAProxy integration tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.harness import free_port

# A tiny threaded HTTP app: answers its own name; /slow?s=N sleeps N seconds; /healthz is 200.
BACKEND_APP = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

NAME = sys.argv[2]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        body = (NAME + " " + self.headers.get("X-Forwarded-Proto", "-") + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except ConnectionError:  # health checks close with a reset
            self.close_connection = True

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class AppProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextlib.contextmanager
def backend_apps(*names: str) -> Iterator[dict[str, AppProcess]]:
    apps: dict[str, AppProcess] = {}
    try:
        for name in names:
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-c", BACKEND_APP, str(port), name],
                stderr=subprocess.DEVNULL,
            )
            apps[name] = AppProcess(name, port, proc)
        for app in apps.values():
            wait_port(app.port)
        yield apps
    finally:
        for app in apps.values():
            app.stop()


def http_get(port: int, path: str = "/", host: str = "x", timeout: float = 10.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


# Many tiny HTTP apps in one asyncio process: argv[1] is a JSON list of names; it binds one port
# per name and prints {"name": port, ...}. Every answer is "<name> <X-Forwarded-Proto>\n";
# /slow?s=N sleeps N seconds; /missing* is 404; /expect-host?h=H is 200 only if the request's
# Host is H (421 otherwise: proves which Host header HAProxy's health checks send).
MULTI_APP = r"""
import asyncio, json, sys
from urllib.parse import parse_qs, urlparse

async def handle(reader, writer, name):
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            target = head[0].split(" ")[1]
            headers = {}
            for line in head[1:]:
                key, _, value = line.partition(":")
                if key:
                    headers[key.strip().lower()] = value.strip()
            if int(headers.get("content-length") or 0):
                await reader.readexactly(int(headers["content-length"]))
            url = urlparse(target)
            query = parse_qs(url.query)
            status = "200 OK"
            if url.path == "/slow":
                await asyncio.sleep(float(query.get("s", ["1"])[0]))
            elif url.path.startswith("/missing"):
                status = "404 Not Found"
            elif url.path == "/expect-host" and headers.get("host") != query.get("h", [""])[0]:
                status = "421 Misdirected Request"
            body = f"{name} {headers.get('x-forwarded-proto', '-')}\n".encode()
            close = headers.get("connection", "").lower() == "close"
            extra = "Connection: close\r\n" if close else ""
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
        pass
    finally:
        writer.close()

async def main():
    ports = {}
    for name in json.loads(sys.argv[1]):
        server = await asyncio.start_server(
            lambda r, w, n=name: handle(r, w, n), "127.0.0.1", 0, backlog=512
        )
        ports[name] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.contextmanager
def multi_apps(names: list[str]) -> Iterator[dict[str, int]]:
    """One process answering on one port per name; yields name -> port."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MULTI_APP, json.dumps(names)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ports: dict[str, int] = json.loads(proc.stdout.readline())
        yield ports
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def connect_refused(port: int) -> bool:
    """True if a connection to 127.0.0.1:``port`` is refused or dropped before any answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(100) == b""
    except OSError:
        return True
