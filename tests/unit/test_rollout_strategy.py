"""The rollout state machine, table-tested: every step's successor and every failure's
compensation, for each strategy."""

from __future__ import annotations

import pytest

from shipyard.rollout.strategy import (
    RECREATE,
    STRATEGIES,
    SURGE,
    Step,
    Strategy,
    Undo,
    compensation,
    next_step,
)

S = Step
U = Undo


def test_steps_follow_the_table() -> None:
    done: tuple[Step, ...] = ()
    seen = []
    while (step := next_step(SURGE, done)) is not None:
        seen.append(step)
        done = (*done, step)
    assert tuple(seen) == SURGE.steps
    assert next_step(RECREATE, ()) == S.RETIRE_OLD
    with pytest.raises(ValueError, match="not a prefix"):
        next_step(SURGE, (S.PROMOTE,))


@pytest.mark.parametrize(
    ("strategy", "failed", "undo"),
    [
        # surge: nothing of the old release was touched before the switch
        (SURGE, S.START_NEW, (U.ABANDON_NEW,)),
        (SURGE, S.WAIT_HEALTHY, (U.ABANDON_NEW,)),
        (SURGE, S.PROMOTE, (U.UNPROMOTE, U.ABANDON_NEW)),
        (SURGE, S.ROUTE_NEW, (U.UNPROMOTE, U.UNROUTE_NEW)),  # routed: drained, not abandoned
        (SURGE, S.RETIRE_OLD, ()),  # promoted and routed: the new release stays
        # recreate: the old instances are gone first, so every failure brings them back
        (RECREATE, S.RETIRE_OLD, (U.RESTORE_OLD,)),
        (RECREATE, S.START_NEW, (U.ABANDON_NEW, U.RESTORE_OLD)),
        (RECREATE, S.WAIT_HEALTHY, (U.ABANDON_NEW, U.RESTORE_OLD)),
        (RECREATE, S.PROMOTE, (U.UNPROMOTE, U.ABANDON_NEW, U.RESTORE_OLD)),
        (RECREATE, S.ROUTE_NEW, (U.UNPROMOTE, U.UNROUTE_NEW, U.RESTORE_OLD)),
    ],
)
def test_compensation(strategy: Strategy, failed: Step, undo: tuple[Undo, ...]) -> None:
    done = strategy.steps[: strategy.steps.index(failed)]
    assert compensation(strategy, done, failed) == undo


def test_compensation_checks_its_input() -> None:
    with pytest.raises(ValueError, match="not the step after"):
        compensation(SURGE, (), S.PROMOTE)


def test_a_strategy_runs_every_step_once() -> None:
    assert set(STRATEGIES) == {"surge", "recreate"}
    with pytest.raises(ValueError, match="every step exactly once"):
        Strategy("broken", (S.START_NEW, S.START_NEW), "")
