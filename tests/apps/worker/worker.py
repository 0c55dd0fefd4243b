"""worker: prints a heartbeat with $VERSION every 0.5 s; exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

VERSION = os.environ.get("VERSION", "")
INTERVAL_S = 0.5

stop = threading.Event()


def on_term(signum: int, frame: FrameType | None) -> None:
    stop.set()  # no I/O in the handler: print() here could re-enter stdout's buffer


def main() -> int:
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    beat = 0
    while not stop.is_set():
        beat += 1
        print(f"worker[{os.getpid()}] heartbeat {beat} version={VERSION}", flush=True)
        stop.wait(INTERVAL_S)
    print(f"worker[{os.getpid()}] SIGTERM: exiting", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
