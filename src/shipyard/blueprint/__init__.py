"""Blueprints: render.yaml (read unchanged) and shipyard.yaml, loaded into normalized specs."""

from shipyard.blueprint.limits import BlueprintLimits
from shipyard.blueprint.load import (
    LoadedBlueprint,
    Notice,
    find_blueprint,
    load_blueprint,
    parse_blueprint,
)
from shipyard.blueprint.refs import (
    Endpoint,
    ResolvedEnv,
    dependency_order,
    dependency_waves,
    generate_secret,
    resolve_env,
)
from shipyard.blueprint.schema import blueprint_json_schema
from shipyard.blueprint.spec import EnvVarSpec, FromService, ServiceSpec

__all__ = [
    "BlueprintLimits",
    "Endpoint",
    "EnvVarSpec",
    "FromService",
    "LoadedBlueprint",
    "Notice",
    "ResolvedEnv",
    "ServiceSpec",
    "blueprint_json_schema",
    "dependency_order",
    "dependency_waves",
    "find_blueprint",
    "generate_secret",
    "load_blueprint",
    "parse_blueprint",
    "resolve_env",
]
