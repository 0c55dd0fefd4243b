"""Rollout strategies as data, and the one small state machine that interprets them (pure).

A strategy is an ordered tuple of steps. The machine answers two questions: after a step
succeeded, which step comes next; after a step failed, what must be undone, in which order,
so that the release that was live keeps (or again starts) serving. Adding a strategy adds a
table and table tests, not branches in the executor (``rollout/execute.py``).

- ``surge`` (the default): every new instance starts beside the old ones, each must pass
  Shipyard's own health check, the release is promoted, the new instances are routed and
  HAProxy must report them UP, and only then are the old ones drained and stopped. Capacity
  never drops below the desired count (blue-green per service).
- ``recreate``: for apps that listen on a fixed port and ignore $PORT, where two generations
  cannot run side by side. The old instances are drained (HAProxy stops sending them new
  requests and waits for the ones in flight), stopped, then the new ones start on the freed
  port. Requests arriving in between wait in HAProxy (connection retries with a 1 s turn-around
  timer) rather than failing at once; a failure starts the old release again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    START_NEW = "start-new"  # start the new release's instances (unrouted)
    WAIT_HEALTHY = "wait-healthy"  # Shipyard's own health check on each new instance
    PROMOTE = "promote"  # the new release becomes live (one transaction)
    ROUTE_NEW = "route-new"  # route the new instances; wait until HAProxy reports them UP
    RETIRE_OLD = "retire-old"  # drain the old instances, then stop them


class Undo(StrEnum):
    """Compensations, each undoing one completed (or failed) step."""

    ABANDON_NEW = "abandon-new"  # stop new instances that were never routed
    UNROUTE_NEW = "unroute-new"  # drain and stop new instances that were routed
    UNPROMOTE = "unpromote"  # the previous release is live again (one transaction)
    RESTORE_OLD = "restore-old"  # start the previous release's instances again


@dataclass(frozen=True)
class Strategy:
    name: str
    steps: tuple[Step, ...]
    summary: str

    def __post_init__(self) -> None:
        if len(set(self.steps)) != len(self.steps) or set(self.steps) != set(Step):
            raise ValueError(f"strategy {self.name!r} must run every step exactly once")


SURGE = Strategy(
    "surge",
    (Step.START_NEW, Step.WAIT_HEALTHY, Step.PROMOTE, Step.ROUTE_NEW, Step.RETIRE_OLD),
    "new instances start beside the old; traffic switches once they are healthy",
)
RECREATE = Strategy(
    "recreate",
    (Step.RETIRE_OLD, Step.START_NEW, Step.WAIT_HEALTHY, Step.PROMOTE, Step.ROUTE_NEW),
    "the old instances are drained and stopped first (the app listens on a fixed port); "
    "requests wait in HAProxy meanwhile",
)
STRATEGIES = {s.name: s for s in (SURGE, RECREATE)}

# What undoes each step once it has run (or failed half-way), most recent first.
_UNDO: dict[Step, Undo | None] = {
    Step.START_NEW: Undo.ABANDON_NEW,
    Step.WAIT_HEALTHY: None,  # nothing to undo: START_NEW's undo stops the instances
    Step.PROMOTE: Undo.UNPROMOTE,
    Step.ROUTE_NEW: Undo.UNROUTE_NEW,
    Step.RETIRE_OLD: Undo.RESTORE_OLD,
}


def next_step(strategy: Strategy, done: tuple[Step, ...]) -> Step | None:
    """The step after the completed ``done`` (a prefix of the strategy), None when finished."""
    if strategy.steps[: len(done)] != done:
        raise ValueError(f"{done} is not a prefix of strategy {strategy.name!r}")
    return strategy.steps[len(done)] if len(done) < len(strategy.steps) else None


def compensation(strategy: Strategy, done: tuple[Step, ...], failed: Step) -> tuple[Undo, ...]:
    """What to undo, in order, after ``failed`` failed with ``done`` completed before it.

    Once the new release is promoted and routed, nothing is undone. A routed new instance is
    drained like any other (UNROUTE_NEW replaces ABANDON_NEW), and
    the old release is restored only after the new instances are gone (they may hold its
    fixed port)."""
    if next_step(strategy, done) != failed:
        raise ValueError(f"{failed} is not the step after {done} in {strategy.name!r}")
    if Step.PROMOTE in done and Step.ROUTE_NEW in done:
        return ()  # the new release serves: what is left (old instances) is the supervisor's
    undo = [u for step in (*done, failed) if (u := _UNDO[step]) is not None]
    if Undo.UNROUTE_NEW in undo:
        undo.remove(Undo.ABANDON_NEW)
    order = (Undo.UNPROMOTE, Undo.UNROUTE_NEW, Undo.ABANDON_NEW, Undo.RESTORE_OLD)
    return tuple(u for u in order if u in undo)
