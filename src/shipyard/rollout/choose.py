"""Which release a rollback goes to (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.errors import Conflict, NotFound
from shipyard.records import Release, ReleaseStatus


def rollback_target(releases: Sequence[Release], current: int | None, to: int | None) -> int:
    """``to`` if given and deployable (built and past its pre-deploy command); else the newest
    release before ``current`` that was live and replaced by a normal deploy (superseded).
    Releases that were rolled away from are never picked by default."""
    by_number = {r.number: r for r in releases}
    if to is not None:
        row = by_number.get(to)
        if row is None:
            known = ", ".join(str(n) for n in sorted(by_number)) or "none"
            raise NotFound(f"Release {to} does not exist (releases: {known}).")
        if to == current:
            raise Conflict(f"Release {to} is already the live release.")
        if row.pruned:
            raise Conflict(
                f"Release {to} cannot be rolled out: its artifact was removed (Shipyard keeps "
                "the artifacts of the 10 releases before the live one)."
            )
        if not row.deployable:
            raise Conflict(
                f"Release {to} cannot be rolled out: it never got past its build and pre-deploy "
                f"command ({row.status}: {row.reason or 'no reason recorded'})."
            )
        return to
    if current is None:
        raise Conflict("Nothing to roll back: the service has no live release.")
    candidates = [
        n for n, r in by_number.items()
        if n < current and r.status == ReleaseStatus.SUPERSEDED and r.deployable
    ]  # fmt: skip
    if not candidates:
        raise Conflict(
            f"No earlier good release to roll back to (live release is {current}). "
            "Use --to N to pick one from `shipyard releases`."
        )
    return max(candidates)
