"""Human output: plain aligned tables and short relative times (no colour dependency)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells
    )


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    delta = max(0, int(time.time() - ts))
    if delta < 60:
        return f"{delta}s ago"
    if delta < 3600:
        return f"{delta // 60}m ago"
    if delta < 86400:
        return f"{delta // 3600}h ago"
    return f"{delta // 86400}d ago"


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_event(event: dict[str, Any]) -> None:
    name = event.get("service") or ""
    message = str(event["message"]).removeprefix(f"{name}: ") if name else event["message"]
    level = event.get("level", "info")
    text = f"  [{name}] {message}" if name else f"  {message}"
    if level == "error":
        click.secho(text, fg="red", err=False)
    elif level == "warning":
        click.secho(text, fg="yellow")
    else:
        click.echo(text)


def failure_summary(final: dict[str, Any]) -> str:
    """One line per failed service (the details were printed as events)."""
    failed = [
        f"{name}: {str(r.get('error', '')).removeprefix(f'{name}: ').splitlines()[0]}"
        for name, r in (final.get("result") or {}).items()
        if r.get("status") != "ok" and r.get("error")
    ]
    return "; ".join(failed) or str(final.get("error") or "unknown error")


def print_plan(plan: dict[str, Any]) -> None:
    click.echo(
        f"Blueprint {plan['blueprint']}"
        + (f" @ {plan['commit'][:12]}" if plan.get("commit") else "")
    )
    for step in plan["steps"]:
        if step["action"] == "create":
            click.echo(f"  + {step['service']} ({step['type']}): create")
        elif step["action"] == "update":
            click.echo(
                f"  ~ {step['service']} ({step['type']}): update {', '.join(step['changes'])}"
            )
        else:
            click.echo(
                f"    {step['service']} ({step['type']}): redeploy "
                "(config unchanged; rebuilds the source)"
            )
    for name in plan.get("orphans", []):
        click.echo(f"  ! {name}: no longer in the Blueprint (kept running)")
    for problem in plan.get("problems", []):
        click.secho(f"  x {problem}", fg="red")
    for notice in plan.get("notices", []):
        click.secho(
            f"  note: {notice['location']}: {notice['path']}: {notice['message']}", fg="yellow"
        )
