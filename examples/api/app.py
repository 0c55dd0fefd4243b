"""hello-api: a private JSON API that counts visits in PostgreSQL (they survive deploys and
restarts) and queues each visit in Redis for hello-worker."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import redis

PORT = int(os.environ.get("PORT", "10001"))
_local = threading.local()


def db() -> psycopg.Connection[tuple[int]]:
    """One connection per request thread, reconnected when the server restarted."""
    conn = getattr(_local, "db", None)
    if conn is None or conn.closed or conn.broken:
        conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        _local.db = conn
    return conn  # type: ignore[no-any-return]


queue = redis.Redis.from_url(os.environ["REDIS_URL"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._json(200, {"status": "ok"})
        elif self.path == "/count":
            try:
                row = db().execute(
                    "UPDATE visits SET count = count + 1 WHERE id = 1 RETURNING count"
                ).fetchone()
                count = row[0] if row else 0
                queue.lpush("visits", json.dumps({"count": count, "at": time.time()}))
            except (psycopg.Error, redis.RedisError) as exc:
                self._json(503, {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
                return
            self._json(200, {"count": count})
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
