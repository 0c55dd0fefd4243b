"""The normalized Blueprint service (what the rest of Shipyard uses), built by load.py from
the raw models in model.py."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from shipyard.blueprint.model import RunnableType


@dataclass(frozen=True)
class FromService:
    type: str
    name: str
    property: str | None
    env_var_key: str | None


@dataclass(frozen=True)
class EnvVarSpec:
    key: str | None  # None only for a {fromGroup: x} item
    value: str | None = None  # numbers/bools in YAML become strings ("3000", "true")
    generate: bool = False
    sync: bool = True  # False for {key, sync: false}: the operator supplies the value
    from_service: FromService | None = None
    from_database: tuple[str, str] | None = None  # (name, property)
    from_group: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """A service Shipyard runs now (web/pserv/worker on a native runtime), normalized."""

    name: str
    type: RunnableType
    runtime: str
    root_dir: str = ""  # normalized relative path, "" = repository root
    build_command: str | None = None
    start_command: str = ""
    pre_deploy_command: str | None = None
    health_check_path: str | None = None
    num_instances: int = 1
    max_shutdown_delay_seconds: int = 30
    env_vars: tuple[EnvVarSpec, ...] = ()
    domains: tuple[str, ...] = ()
    health_check_timeout_seconds: float | None = None  # shipyard.yaml extension
    drain_timeout_seconds: float | None = None  # shipyard.yaml extension

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists), for the API."""
        data: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return data

    def config_digest(self) -> str:
        """sha256 hex of the canonical JSON of every field: equal digests = same config."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
