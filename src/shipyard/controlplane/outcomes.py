"""How an operation's outcome is told and recorded: errors as users should read them (a full
disk is named as such, whatever raised it), and state writes that survive a full disk."""

from __future__ import annotations

import logging
from collections.abc import Callable

from shipyard.context import Context
from shipyard.disk import is_disk_full
from shipyard.errors import NoDiskSpace, ShipyardError

log = logging.getLogger("shipyard.engine")


def explain(ctx: Context, exc: Exception, during: str = "") -> ShipyardError:
    """The error to report for ``exc``: "not enough disk space" when the disk filled up
    (whatever raised it), a ShipyardError as it is (noting a nearly full disk: a build tool
    that hit it only says it failed), anything else as an internal error."""
    if is_disk_full(exc):
        return exc if isinstance(exc, NoDiskSpace) else ctx.disk.no_space(during=during)
    if isinstance(exc, ShipyardError):
        disk = ctx.disk.status()
        if not disk.low:
            return exc
        return type(exc)(f"{exc.message}\n  (the disk is nearly full: {disk.describe()})",
                         fields=exc.fields)  # fmt: skip
    return ShipyardError(f"internal error: {type(exc).__name__}: {exc}")


def durably(ctx: Context, write: Callable[[], None]) -> None:
    """Run a state write that records an outcome; on a full disk, release the reserve and
    retry, then retry every few seconds until space comes back (an outcome is never lost, an
    operation never stays "running")."""
    delay = 1.0
    while True:
        try:
            write()
            return
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            if ctx.disk.release_reserve():
                continue
            log.error("cannot record an outcome: the disk is full; retrying in %g s", delay)
            ctx.clock.sleep(delay)
            delay = min(delay * 2, 30.0)
