"""pyweb: a stdlib HTTP test app for Shipyard's integration tests and benchmarks.

Routes: / (identity), /healthz, /sleep?ms=, /env?key=, /file?path=[&write=], /proxy?url=.
Env: PORT (required), FIXED_PORT, BOOT_DELAY, CRASH_ON_START, HEALTH_STATUS, EXIT_ON_SIGTERM,
VERSION, RENDER_SERVICE_NAME, RENDER_GIT_COMMIT. See tests/apps/README.md.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

# FIXED_PORT: listen there and ignore $PORT, like apps hard-wired to 8000 or 3000.
PORT = int(os.environ.get("FIXED_PORT") or os.environ.get("PORT", "0") or "0")
VERSION = os.environ.get("VERSION", "")
HEALTH_STATUS = int(os.environ.get("HEALTH_STATUS", "200") or "200")
EXIT_ON_SIGTERM = os.environ.get("EXIT_ON_SIGTERM", "1") != "0"
DRAIN_LIMIT_S = 30.0

_inflight = 0
_inflight_lock = threading.Condition()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyweb"
    # TCP_NODELAY, as production servers (gunicorn, uvicorn, Node) set it: headers and body
    # are two writes, and on a reused keep-alive connection Nagle would hold the body until
    # the peer's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        global _inflight
        with _inflight_lock:
            _inflight += 1
        try:
            self._route()
        finally:
            with _inflight_lock:
                _inflight -= 1
                _inflight_lock.notify_all()

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/healthz":
            self._send(HEALTH_STATUS, "ok\n" if HEALTH_STATUS < 400 else "unhealthy\n")
        elif url.path == "/":
            self._send_json(200, self._identity())
        elif url.path == "/sleep":
            ms = float(query.get("ms", "0") or "0")
            time.sleep(ms / 1000.0)
            self._send_json(200, {"slept_ms": ms, "pid": os.getpid(), "version": VERSION})
        elif url.path == "/env":
            key = query.get("key", "")
            value = os.environ.get(key)
            if value is None:
                self._send(404, f"env var {key!r} is not set\n")
            else:
                self._send(200, value)
        elif url.path == "/file":  # read (or with ?write=TEXT, write) a file: disks' tests
            self._file(query.get("path", ""), query.get("write"))
        elif url.path == "/proxy":
            self._proxy(query.get("url", ""))
        else:
            self._send(404, "not found\n")

    def _identity(self) -> dict[str, object]:
        return {
            "service": os.environ.get("RENDER_SERVICE_NAME"),
            "version": VERSION,
            "pid": os.getpid(),
            "port": PORT,
            "commit": os.environ.get("RENDER_GIT_COMMIT"),
            "host": self.headers.get("Host"),
        }

    def _file(self, path: str, text: str | None) -> None:
        try:
            if text is not None:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
            with open(path, encoding="utf-8") as handle:
                self._send(200, handle.read())
        except OSError as exc:
            self._send(404 if isinstance(exc, FileNotFoundError) else 500, f"{exc}\n")

    def _proxy(self, target: str) -> None:
        if not target:
            self._send(400, "missing ?url=\n")
            return
        try:
            with urllib.request.urlopen(target, timeout=10) as resp:
                self._send(resp.status, resp.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            self._send(exc.code, exc.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as exc:
            self._send(502, f"proxy to {target} failed: {exc}\n")

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload) + "\n", "application/json")

    def _send(self, status: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        line = f"pyweb[{os.getpid()}] {self.address_string()} " + (format % args)
        print(line, flush=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main() -> int:
    boot_delay = float(os.environ.get("BOOT_DELAY", "0") or "0")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # nothing to drain yet
    if boot_delay > 0:
        time.sleep(boot_delay)
    if os.environ.get("CRASH_ON_START") == "1":
        print(
            "pyweb: CRASH_ON_START=1 set, exiting with code 3 before listening",
            file=sys.stderr,
            flush=True,
        )
        return 3
    if PORT <= 0:
        print("pyweb: $PORT is not set", file=sys.stderr, flush=True)
        return 2
    server = Server(("127.0.0.1", PORT), Handler)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if EXIT_ON_SIGTERM:
            # os.write, not print: print() in a signal handler can re-enter stdout's buffer.
            os.write(1, f"pyweb[{os.getpid()}] SIGTERM: exiting now\n".encode())
            os._exit(0)  # hostile: drop in-flight requests on the floor
        os.write(1, f"pyweb[{os.getpid()}] SIGTERM: draining\n".encode())
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"pyweb[{os.getpid()}] version={VERSION} listening on 127.0.0.1:{PORT}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()  # stop accepting; idle keep-alive connections die with the process
    with _inflight_lock:
        _inflight_lock.wait_for(lambda: _inflight == 0, timeout=DRAIN_LIMIT_S)
    print(f"pyweb[{os.getpid()}] drained, bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
