"""Time as a dependency: loops and policies take a Clock so tests never wait on real time.

Every wait-for-something loop goes through :func:`poll_until` (first truthy answer, or None on
timeout) or :func:`poll_while` (the last value, whether or not it is still pending).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = ["Clock", "FakeClock", "SystemClock", "poll_until", "poll_while"]

T = TypeVar("T")

_DEADLINE_SLACK_S = 1e-6  # a remainder this small is rounding, not time left to wait


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock, for records)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (for timeouts)."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to (sleep advances it instantly)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


def poll_while(
    clock: Clock,
    probe: Callable[[], T],
    pending: Callable[[T], bool],
    *,
    timeout_s: float,
    interval_s: float,
    backoff: float = 1.0,
    max_interval_s: float | None = None,
) -> T:
    """Call ``probe`` until ``pending(value)`` is false or ``timeout_s`` has passed; return the
    last value (the answer, or on timeout what was still pending: who is busy, the last error).

    * ``probe`` runs at least once, immediately, and once more when the deadline is reached
      (the last sleep is cut short to end exactly at the deadline), so a wait never overshoots
      ``timeout_s`` by more than one probe. ``timeout_s <= 0`` means one probe, no sleep.
    * Between probes it sleeps ``interval_s``, multiplied by ``backoff`` after each sleep and
      capped at ``max_interval_s`` (no cap when None). All waiting goes through ``clock``
      (``clock.sleep``/``clock.monotonic``), so with a :class:`FakeClock` nothing waits on
      real time; time a probe itself takes counts against the timeout.
    * Exceptions from ``probe`` or ``pending`` propagate: raising is how a probe aborts.

    Raises ValueError for ``interval_s <= 0``, ``backoff < 1`` or ``max_interval_s <
    interval_s`` (each would poll in a busy loop or never back off as asked).
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    if backoff < 1:
        raise ValueError(f"backoff must be >= 1, got {backoff!r}")
    if max_interval_s is not None and max_interval_s < interval_s:
        raise ValueError(f"max_interval_s {max_interval_s!r} is below interval_s {interval_s!r}")
    deadline = clock.monotonic() + timeout_s
    delay = interval_s
    value = probe()
    while pending(value):
        remaining = deadline - clock.monotonic()
        if remaining <= _DEADLINE_SLACK_S:  # reached (up to float rounding of the sums)
            break
        # The last sleep ends at the deadline; then one final probe, whatever the clock says
        # (a float deadline is not always reached exactly by adding the remainder to "now").
        last_round = delay >= remaining
        clock.sleep(remaining if last_round else delay)
        value = probe()
        if last_round:
            break
        delay *= backoff
        if max_interval_s is not None:
            delay = min(delay, max_interval_s)
    return value


def poll_until(
    clock: Clock,
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float,
    backoff: float = 1.0,
    max_interval_s: float | None = None,
) -> T | None:
    """Call ``check`` until it returns a truthy value and return that value; None when
    ``timeout_s`` passed first. Timing, backoff and errors as in :func:`poll_while`.

    Falsy results (None, False, 0, "", empty containers) all mean "not yet"; when a falsy value
    is an answer (exit code 0, an empty list of busy servers) use :func:`poll_while`.
    A predicate works as is: ``poll_until(clock, lambda: not alive(h), ...)`` is True or None.
    """
    value = poll_while(
        clock,
        check,
        lambda v: not v,
        timeout_s=timeout_s,
        interval_s=interval_s,
        backoff=backoff,
        max_interval_s=max_interval_s,
    )
    return value or None
