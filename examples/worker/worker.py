"""hello-worker: a background worker that takes each visit hello-api queued in Redis and logs
it (a stand-in for sending an email or resizing an image)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import redis

stop = threading.Event()


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    queue = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10)
    print(f"hello-worker[{os.getpid()}] waiting for visits", flush=True)
    while not stop.is_set():
        try:
            item = queue.brpop(["visits"], timeout=2)
        except redis.RedisError as exc:
            print(f"hello-worker[{os.getpid()}] queue unavailable: {exc}", flush=True)
            stop.wait(2)
            continue
        if item is not None:
            visit = json.loads(item[1])
            print(f"hello-worker[{os.getpid()}] processed visit #{visit['count']}", flush=True)
    print(f"hello-worker[{os.getpid()}] SIGTERM: bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
