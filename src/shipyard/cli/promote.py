"""`shipyard promote SERVICE --from ENV --to ENV`: a release of one environment of a Blueprint
project rolled out in another, without a build."""

from __future__ import annotations

import click

from shipyard.apimodels import PromoteAccepted, PromoteBody
from shipyard.cli.common import client, json_option
from shipyard.cli.output import emit_json, failure_summary, print_event
from shipyard.client import Client
from shipyard.errors import error_from_dict


def request_promotion(c: Client, body: PromoteBody) -> PromoteAccepted:
    """POST /v1/promote (through the client's request, errors raised as the server's)."""
    return c.promote(body)


def register(cli: click.Group) -> None:
    """Add `promote` to ``cli``."""

    @cli.command()
    @click.argument("service")
    @click.option(
        "--from",
        "source",
        required=True,
        metavar="ENV",
        help="The environment whose live release is promoted (e.g. staging).",
    )
    @click.option(
        "--to",
        "target",
        required=True,
        metavar="ENV",
        help="The environment it is rolled out in (e.g. production).",
    )
    @click.option(
        "--wait", is_flag=True, help="Return when the rollout finished; fail if it failed."
    )
    @json_option
    def promote(service: str, source: str, target: str, wait: bool, as_json: bool) -> None:
        """Roll out SERVICE's live release of one environment in another, without a build:
        the same artifact, with the target environment's own env."""  # fmt: skip
        with client() as c:
            body = PromoteBody(service=service, from_environment=source, to_environment=target)
            op = request_promotion(c, body)
            if not as_json:
                click.echo(f"Promoting {op.source} release {op.release} to {op.target} "
                           f"(#{op.id}).")  # fmt: skip
            if not wait:
                if as_json:
                    emit_json(op)
                return
            final = c.wait(op.id, on_event=None if as_json else print_event)
        if as_json:
            emit_json(final)
        if final.status != "succeeded":
            detail = final.error if as_json else failure_summary(final)
            raise error_from_dict(
                {"code": final.error_code or "error", "msg": f"Operation #{op.id} failed: {detail}"}
            )
        if not as_json:
            click.secho(f"Operation #{op.id} succeeded.", fg="green")
