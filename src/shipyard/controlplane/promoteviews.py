"""API route of `shipyard promote` (Blueprint projects: environment to environment)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.params import Depends

from shipyard.apimodels import PromoteAccepted, PromoteBody
from shipyard.controlplane.engine import Engine
from shipyard.controlplane.promote import promote


def add_routes(
    app: FastAPI, engine: Engine, guarded: list[Depends], errors: dict[int | str, dict[str, Any]]
) -> None:
    """``errors``: the responses every route documents (400, 401, 413, 500)."""
    responses: dict[int | str, dict[str, Any]] = {
        **errors,
        400: {**errors[400], "description": "both environments name the same service"},
        404: {**errors[400], "description": "no such service or environment (the known ones "
              "are listed)"},
        409: {**errors[400], "description": "the source has no live release (or its artifact "
              "is gone), the target has none yet, their type or runtime differ, or the target "
              "is busy"},
        422: {**errors[400], "description": "a malformed body"},
    }  # fmt: skip

    @app.post("/v1/promote", dependencies=guarded, status_code=202, responses=responses)
    def promote_service(body: PromoteBody) -> PromoteAccepted:
        """Roll out the live release of SERVICE in one environment in another, without a
        build: the source's artifact with the target's own spec and env (`shipyard promote`).
        Follow the operation like a deploy."""
        return promote(engine, body.service, body.from_environment, body.to_environment)
