"""Which release artifacts to keep (pure): the live one, anything newer (a deploy may be about
to use it), and the newest ``keep`` deployable ones before it for rollbacks (Kubernetes keeps
10 revisions by default: revisionHistoryLimit)."""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.records import Release

KEEP = 10


def releases_to_prune(
    releases: Sequence[Release], current: int | None, keep: int = KEEP
) -> list[int]:
    if current is None:
        return []
    older = sorted((r.number for r in releases if r.number < current), reverse=True)
    deployable = {r.number for r in releases if r.deployable}
    pruned = {r.number for r in releases if r.pruned}
    kept = [n for n in older if n in deployable][:keep]
    return [n for n in older if n not in kept and n not in pruned]
