"""Which release artifacts to keep (pure): the live one, anything newer (a deploy may be about
to use it), and the newest ``keep`` deployable ones before it for rollbacks (Kubernetes keeps
10 revisions by default: revisionHistoryLimit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KEEP = 10


def releases_to_prune(
    releases: Sequence[dict[str, Any]], current: int | None, keep: int = KEEP
) -> list[int]:
    if current is None:
        return []
    older = sorted((int(r["number"]) for r in releases if int(r["number"]) < current), reverse=True)
    deployable = {int(r["number"]) for r in releases if r.get("deployable")}
    kept = [n for n in older if n in deployable][:keep]
    return [n for n in older if n not in kept and not _pruned(releases, n)]


def _pruned(releases: Sequence[dict[str, Any]], number: int) -> bool:
    return any(int(r["number"]) == number and r.get("pruned") for r in releases)
