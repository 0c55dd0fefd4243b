"""Restart policy for crashed instances (pure).

Exponential backoff on crashes within a window: 1 s, 2 s, 4 s ... capped at 5 minutes. Three or
more crashes in the window is a crash loop: still retried, at the backoff pace, and reported as
such. An instance that stays up for ``window_s`` starts from a clean slate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    window_s: float = 600.0
    loop_threshold: int = 3

    def recent(self, crash_times: tuple[float, ...], now: float) -> tuple[float, ...]:
        return tuple(t for t in crash_times if now - t <= self.window_s)

    def delay(self, crash_times: tuple[float, ...], now: float) -> float:
        """Seconds to wait before restarting, given every crash so far (including this one)."""
        count = len(self.recent(crash_times, now))
        if count <= 0:
            return 0.0
        return float(min(self.base_s * 2 ** (count - 1), self.cap_s))

    def crash_looping(self, crash_times: tuple[float, ...], now: float) -> bool:
        return len(self.recent(crash_times, now)) >= self.loop_threshold
