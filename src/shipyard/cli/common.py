"""What every command of the CLI shares: settings, the API client, the --json option."""

from __future__ import annotations

import click

from shipyard.client import Client
from shipyard.settings import Settings


def settings() -> Settings:
    return Settings.from_env()


def client(timeout: float | None = None) -> Client:
    """The API client of this invocation: ``obj`` of the click context when one is given (a
    callable returning a Client: how in-process CLI tests reach a TestClient), else one to the
    daemon of SHIPYARD_HOME."""
    ctx = click.get_current_context(silent=True)
    factory = ctx.find_root().obj if ctx is not None else None
    if callable(factory):
        made = factory()
        if not isinstance(made, Client):
            raise TypeError(f"the CLI's context object made {made!r}, not a Client")
        return made
    return Client(settings()) if timeout is None else Client(settings(), timeout=timeout)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
