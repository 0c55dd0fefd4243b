"""poll_until / poll_while against a FakeClock: exact probe times, never real waiting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from shipyard.clock import FakeClock, SystemClock, poll_until, poll_while


@dataclass
class Script:
    """A probe that answers from a list (repeating the last answer) and records when it ran."""

    clock: FakeClock
    answers: Sequence[object]
    cost_s: float = 0.0  # how long one probe takes (advances the fake clock)
    times: list[float] = field(default_factory=list)

    def __call__(self) -> object:
        self.times.append(round(self.clock.monotonic(), 9))
        if len(self.times) > 1000:
            raise AssertionError("runaway poll loop")
        self.clock.advance(self.cost_s)
        return self.answers[min(len(self.times), len(self.answers)) - 1]


@dataclass(frozen=True)
class Case:
    name: str
    answers: Sequence[object]
    timeout_s: float
    interval_s: float
    expected: object
    times: list[float]
    backoff: float = 1.0
    max_interval_s: float | None = None
    cost_s: float = 0.0


UNTIL_CASES = [
    Case("first probe answers, no sleep", ["ready"], 5, 0.5, "ready", [0.0]),
    Case("answers on the third probe", [None, None, "ok"], 5, 0.5, "ok", [0.0, 0.5, 1.0]),
    Case("times out: last probe at the deadline", [None], 1.2, 0.5, None, [0, 0.5, 1.0, 1.2]),
    Case("timeout a multiple of the interval", [None], 1.0, 0.25, None, [0, 0.25, 0.5, 0.75, 1]),
    Case("timeout 0 probes once", [None, "late"], 0, 0.5, None, [0.0]),
    Case("negative timeout probes once", [None, "late"], -3, 0.5, None, [0.0]),
    Case("interval longer than timeout", [None], 0.3, 1.0, None, [0.0, 0.3]),
    Case("answer found by the deadline probe", [None, "yes"], 0.3, 1.0, "yes", [0.0, 0.3]),
    Case("falsy answers mean not yet", [False, 0, "", [], None, 7], 9, 1, 7, [0, 1, 2, 3, 4, 5]),
    Case("True from a predicate", [False, True], 5, 0.1, True, [0.0, 0.1]),
    Case(
        "backoff doubles up to the cap, cut at the deadline",
        [None],
        2.0,
        0.1,
        None,
        [0.0, 0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.0],
        backoff=2,
        max_interval_s=0.4,
    ),
    Case(
        "backoff without a cap",
        [None],
        3.5,
        0.5,
        None,
        [0.0, 0.5, 1.5, 3.5],
        backoff=2,
    ),
    Case(
        "slow probes count against the timeout",
        [None],
        1.0,
        0.1,
        None,
        [0.0, 0.5, 1.0],
        cost_s=0.4,
    ),
    Case(
        "a probe that overruns the deadline ends the wait",
        [None, None, "too late"],
        1.0,
        0.1,
        None,
        [0.0],
        cost_s=1.5,
    ),
]


@pytest.mark.parametrize("case", UNTIL_CASES, ids=lambda c: c.name)
def test_poll_until(case: Case) -> None:
    clock = FakeClock()
    probe = Script(clock, case.answers, cost_s=case.cost_s)
    result = poll_until(
        clock,
        probe,
        timeout_s=case.timeout_s,
        interval_s=case.interval_s,
        backoff=case.backoff,
        max_interval_s=case.max_interval_s,
    )
    assert result == case.expected
    assert probe.times == pytest.approx(case.times)


WHILE_CASES = [
    Case("exit code 0 is an answer", [None, None, 0], 5, 0.5, 0, [0.0, 0.5, 1.0]),
    Case("empty busy list is an answer", [["a", "b"], ["b"], []], 5, 1, [], [0, 1, 2]),
    Case("timeout returns the last value", [["a", "b"], ["b"]], 1.5, 1, ["b"], [0, 1, 1.5]),
    Case("done at once", [[]], 5, 1, [], [0.0]),
]


@pytest.mark.parametrize("case", WHILE_CASES, ids=lambda c: c.name)
def test_poll_while(case: Case) -> None:
    clock = FakeClock()
    probe = Script(clock, case.answers)
    pending: Callable[[object], bool] = (
        (lambda v: v is None) if case.answers[0] is None else (lambda v: bool(v))
    )
    result = poll_while(
        clock,
        probe,
        pending,
        timeout_s=case.timeout_s,
        interval_s=case.interval_s,
    )
    assert result == case.expected
    assert probe.times == pytest.approx(case.times)


def test_the_wait_takes_exactly_the_timeout_on_the_fake_clock() -> None:
    clock = FakeClock()
    assert poll_until(clock, lambda: None, timeout_s=30, interval_s=0.05) is None
    assert clock.monotonic() == pytest.approx(30)


@pytest.mark.parametrize("start", [0.1, 1e6 + 0.1, 1.7e9 + 0.3])
def test_float_deadlines_always_terminate(start: float) -> None:
    """now + (deadline - now) may fall a hair short of deadline: the loop must still end."""
    clock = FakeClock()
    clock.advance(start)
    probe = Script(clock, [None])
    assert poll_until(clock, probe, timeout_s=0.3, interval_s=0.1) is None
    assert len(probe.times) == 4


def test_exceptions_from_the_probe_abort_the_wait() -> None:
    clock = FakeClock()
    calls = []

    def probe() -> str | None:
        calls.append(clock.monotonic())
        if len(calls) == 3:
            raise RuntimeError("config rejected")
        return None

    with pytest.raises(RuntimeError, match="config rejected"):
        poll_until(clock, probe, timeout_s=10, interval_s=1)
    assert calls == [0, 1, 2]


def test_exceptions_from_pending_propagate() -> None:
    def pending(value: int) -> bool:
        raise KeyError(value)

    with pytest.raises(KeyError):
        poll_while(FakeClock(), lambda: 1, pending, timeout_s=1, interval_s=0.1)


@pytest.mark.parametrize(
    ("interval_s", "backoff", "max_interval_s", "message"),
    [
        (0, 1.0, None, "interval_s"),
        (-1, 1.0, None, "interval_s"),
        (0.1, 0.5, None, "backoff"),
        (0.5, 2.0, 0.1, "max_interval_s"),
    ],
)
def test_bad_parameters_raise(
    interval_s: float, backoff: float, max_interval_s: float | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        poll_until(
            FakeClock(),
            lambda: None,
            timeout_s=1,
            interval_s=interval_s,
            backoff=backoff,
            max_interval_s=max_interval_s,
        )


def test_system_clock_really_waits() -> None:
    clock = SystemClock()
    t0 = clock.monotonic()
    assert poll_until(clock, lambda: None, timeout_s=0.05, interval_s=0.01) is None
    assert 0.05 <= clock.monotonic() - t0 < 1
