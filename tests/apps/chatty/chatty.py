"""chatty: writes numbered lines to stdout at RATE_MB_PER_S (default 20) until SIGTERM; each
line is ``<n> <padding>`` of LINE_BYTES (default 100) bytes. For log-bounding tests: the kept
lines must form one gap-free run of numbers."""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

RATE = float(os.environ.get("RATE_MB_PER_S", "20")) * 1_000_000
LINE = int(os.environ.get("LINE_BYTES", "100"))
BATCH_S = 0.01  # write a batch of lines every 10 ms

running = True


def on_term(signum: int, frame: FrameType | None) -> None:
    global running
    running = False


def main() -> int:
    signal.signal(signal.SIGTERM, on_term)
    per_batch = max(1, int(RATE * BATCH_S / LINE))
    n = 0
    out = sys.stdout.buffer
    next_at = time.monotonic()
    while running:
        lines = []
        for _ in range(per_batch):
            n += 1
            head = f"{n} "
            lines.append(head + "x" * (LINE - len(head) - 1) + "\n")
        out.write("".join(lines).encode())
        out.flush()
        next_at += BATCH_S
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return 0


if __name__ == "__main__":
    sys.exit(main())
