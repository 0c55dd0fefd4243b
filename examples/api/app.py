"""hello-api: a private JSON API that counts visits (in memory)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "10001"))
_count = 0
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        global _count
        if self.path == "/healthz":
            self._json(200, {"status": "ok"})
        elif self.path == "/count":
            with _lock:
                _count += 1
                value = _count
            self._json(200, {"count": value})
        else:
            self._json(404, {"error": "not found"})

    def _json(self, status: int, payload: object) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"hello-api[{os.getpid()}] " + (format % args), flush=True)


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"hello-api[{os.getpid()}] listening on 127.0.0.1:{PORT}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print(f"hello-api[{os.getpid()}] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
