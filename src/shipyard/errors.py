"""The ShipyardError tree.

Every error a user can see is a ShipyardError with a stable ``code`` (used by the REST API and
rebuilt by the client), a message that says what is wrong, where and what to do, and the exit
code the CLI uses. Drivers translate foreign errors into these (``raise ... from exc``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ShipyardError(Exception):
    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.message, "fields": self.fields}


class UsageError(ShipyardError):
    """A CLI flag or API argument is malformed."""

    code = "usage"
    exit_code = 2
    http_status = 400


class LimitExceeded(UsageError):
    """Input over a configured bound (Blueprint size, nesting, alias expansion; request body).
    The message names the limit, the value found and the setting that raises it."""

    code = "limit_exceeded"
    http_status = 413


class NoDiskSpace(ShipyardError):
    """Not enough free disk space for an operation (checked first, or ENOSPC during it)."""

    code = "no_disk_space"
    exit_code = 14
    http_status = 507


class BlueprintError(ShipyardError):
    """The Blueprint file is invalid; ``fields["problems"]`` lists every problem found."""

    code = "blueprint_invalid"
    exit_code = 3
    http_status = 422


class NotFound(ShipyardError):
    code = "not_found"
    exit_code = 4
    http_status = 404


class Conflict(ShipyardError):
    """The request conflicts with the current state (e.g. a deploy already running)."""

    code = "conflict"
    exit_code = 5
    http_status = 409


class BuildFailed(ShipyardError):
    code = "build_failed"
    exit_code = 10
    http_status = 422


class DeployFailed(ShipyardError):
    code = "deploy_failed"
    exit_code = 11
    http_status = 422


class EdgeError(ShipyardError):
    """HAProxy could not be started, configured or queried."""

    code = "edge_error"
    exit_code = 12


class RuntimeFailure(ShipyardError):
    """An instance could not be started or stopped."""

    code = "runtime_error"
    exit_code = 13


class Unauthorized(ShipyardError):
    code = "unauthorized"
    exit_code = 6
    http_status = 401


class DaemonUnavailable(ShipyardError):
    code = "daemon_unavailable"
    exit_code = 7
    http_status = 503


ERROR_CLASSES: dict[str, type[ShipyardError]] = {
    cls.code: cls
    for cls in (
        ShipyardError,
        UsageError,
        LimitExceeded,
        NoDiskSpace,
        BlueprintError,
        NotFound,
        Conflict,
        BuildFailed,
        DeployFailed,
        EdgeError,
        RuntimeFailure,
        Unauthorized,
        DaemonUnavailable,
    )
}


def error_from_dict(data: dict[str, Any]) -> ShipyardError:
    """Rebuild the exception the server raised from its ``{code, msg, fields}`` body."""
    cls = ERROR_CLASSES.get(str(data.get("code")), ShipyardError)
    return cls(str(data.get("msg", "unknown error")), fields=dict(data.get("fields") or {}))
