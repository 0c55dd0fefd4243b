"""The spec as stored in state: env var values replaced by a digest (values live only in the
encrypted env snapshot), so a changed value still shows up in `plan` but is never stored or
returned in clear."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shipyard.blueprint.spec import ServiceSpec


def stored_spec(spec: ServiceSpec, digest: Callable[[str], str]) -> dict[str, Any]:
    """``digest``: a keyed digest (SecretBox.digest), never a bare hash of a secret."""
    data = spec.to_dict()
    data["env_vars"] = [_redact(e, digest) for e in data.get("env_vars", [])]
    data["domains"] = list(data.get("domains", []))
    return data


def _redact(entry: dict[str, Any], digest: Callable[[str], str]) -> dict[str, Any]:
    kind = next(
        (
            k
            for k in ("value", "generate", "from_service", "from_database", "from_group")
            if entry.get(k) not in (None, False)
        ),
        "sync",
    )
    return {
        "key": entry.get("key") or entry.get("from_group"),
        "kind": kind,
        "digest": digest(json.dumps(entry, sort_keys=True)),
    }
