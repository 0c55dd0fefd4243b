"""Which release a rollback goes to (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipyard.errors import Conflict, NotFound

BUILT = ("built", "deploying", "live", "superseded", "rolled-back", "failed")


def rollback_target(releases: Sequence[dict[str, Any]], current: int | None, to: int | None) -> int:
    """``to`` if given and rollable; else the last release before ``current`` that was live and
    replaced by a normal deploy (status superseded). Releases rolled away from are skipped."""
    by_number = {int(r["number"]): r for r in releases}
    if to is not None:
        row = by_number.get(to)
        if row is None:
            known = ", ".join(str(n) for n in sorted(by_number)) or "none"
            raise NotFound(f"Release {to} does not exist (releases: {known}).")
        if to == current:
            raise Conflict(f"Release {to} is already the live release.")
        if row["status"] not in BUILT or (
            row["status"] == "failed" and not row.get("live_at") and _never_built(row)
        ):
            raise Conflict(
                f"Release {to} cannot be rolled out: its build did not succeed "
                f"({row['status']}: {row['reason']})."
            )
        return to
    if current is None:
        raise Conflict("Nothing to roll back: the service has no live release.")
    candidates = [n for n, r in by_number.items() if n < current and r["status"] == "superseded"]
    if not candidates:
        raise Conflict(
            f"No earlier good release to roll back to (live release is {current}). "
            "Use --to N to pick one from `shipyard releases`."
        )
    return max(candidates)


def _never_built(row: dict[str, Any]) -> bool:
    return str(row.get("reason", "")).startswith(("build", "rootDir"))
