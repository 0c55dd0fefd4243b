"""hello-worker: a background worker that prints a heartbeat every few seconds."""

from __future__ import annotations

import os
import signal
import sys
import threading

stop = threading.Event()


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    interval = float(os.environ.get("HEARTBEAT_SECONDS", "5"))
    beat = 0
    while not stop.is_set():
        beat += 1
        print(f"hello-worker[{os.getpid()}] heartbeat {beat}", flush=True)
        stop.wait(interval)
    print(f"hello-worker[{os.getpid()}] SIGTERM: bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
