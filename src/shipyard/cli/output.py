"""Human output: plain aligned tables and short relative times (no colour dependency)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click
from pydantic import BaseModel

from shipyard.apimodels import EventView, OperationView, PlanView


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
    """Models (or lists of them) as the API's JSON, keys sorted."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_event(event: EventView) -> None:
    name = event.service
    message = event.message.removeprefix(f"{name}: ") if name else event.message
    level = event.level
    text = f"  [{name}] {message}" if name else f"  {message}"
    if level == "error":
        click.secho(text, fg="red", err=False)
    elif level == "warning":
        click.secho(text, fg="yellow")
    else:
        click.echo(text)


def failure_summary(final: OperationView) -> str:
    """One line per failed service (the details were printed as events)."""
    failed = [
        f"{name}: {r.error.removeprefix(f'{name}: ').splitlines()[0]}"
        for name, r in final.result.items()
        if r.status != "ok" and r.error
    ]
    return "; ".join(failed) or final.error or "unknown error"


def print_plan(plan: PlanView) -> None:
    click.echo(f"Blueprint {plan.blueprint}" + (f" @ {plan.commit[:12]}" if plan.commit else ""))
    for step in plan.steps:
        if step.action == "create":
            click.echo(f"  + {step.service} ({step.type}): create")
        elif step.action == "update":
            click.echo(f"  ~ {step.service} ({step.type}): update {', '.join(step.changes)}")
        else:
            click.echo(
                f"    {step.service} ({step.type}): redeploy "
                "(config unchanged; rebuilds the source)"
            )
    for d in plan.datastores:
        what = "Key Value" if d.kind == "keyvalue" else "database"
        if d.action == "create":
            click.echo(f"  + {d.name} ({what}): create")
        elif d.action == "update":
            click.echo(f"  ~ {d.name} ({what}): update {', '.join(d.changes)}")
        else:
            click.echo(f"    {d.name} ({what}): unchanged")
    for name in plan.orphans:
        click.echo(f"  ! {name}: no longer in the Blueprint (kept running)")
    for name in plan.kept_datastores:
        click.echo(
            f"  ! {name}: no longer in the Blueprint (kept, with its data; "
            f"`shipyard db delete {name} --yes` deletes it)"
        )
    for problem in plan.problems:
        click.secho(f"  x {problem}", fg="red")
    for notice in plan.notices:
        click.secho(f"  note: {notice.location}: {notice.path}: {notice.message}", fg="yellow")
