"""The Blueprint schema: JSON Schema export, and what the schema expects at a path.

``explain`` turns pydantic's errors into (path, message) pairs that name what was expected,
with a "Did you mean" for unknown keys and bad enum values.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shipyard.blueprint.model import Blueprint
from shipyard.blueprint.scalars import Loc, describe

_EXPECTED_TYPE = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def blueprint_json_schema() -> dict[str, Any]:
    """JSON Schema of the Blueprint file as written (camelCase keys)."""
    return Blueprint.model_json_schema(by_alias=True)


def did_you_mean(word: object, candidates: list[str] | tuple[str, ...]) -> str:
    matches = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f". Did you mean '{matches[0]}'?" if matches else ""


def explain(exc: ValidationError, data: Any) -> list[tuple[Loc, str]]:
    """Each validation error as (data path, message); union member tags are removed."""
    out: list[tuple[Loc, str]] = []
    for error in exc.errors():
        path, node = _data_path(error["loc"], data)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, "type")
        item = (path, _message(error, node))
        if item not in out:
            out.append(item)
    return out


def _data_path(loc: tuple[str | int, ...], data: Any) -> tuple[Loc, Any]:
    """Follow ``loc`` through the data, skipping discriminator tags pydantic inserts."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part not in node and part == node.get("type"):
                continue  # the union tag
            path.append(part)
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        else:
            break  # a scalar: what follows names union members, not data
    return tuple(path), node


def _message(error: ErrorDetails, node: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error["input"]
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"])
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = re.findall(r"'([^']*)'", expected) or [expected.lower()]
        if len(options) == 1:
            return f"expected {options[0]!r}, got {describe(given)}".replace("'true'", "true")
        return f"expected one of {', '.join(options)}; got {describe(given)}" + did_you_mean(
            given, options
        )
    if kind == "union_tag_invalid":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        return (
            f"unknown type '{ctx.get('tag')}': expected one of {', '.join(options)}"
            + did_you_mean(ctx.get("tag"), options)
        )
    if kind == "union_tag_not_found":
        return "missing required field (the service type: web, pserv, worker, cron or keyvalue)"
    if kind in _EXPECTED_TYPE:
        return f"expected {_EXPECTED_TYPE[kind]}, got {describe(given)}"
    if kind == "blueprint":
        return error["msg"]
    if kind.startswith(("greater_than", "less_than")):
        return f"{error['msg'].replace('Input should be', 'expected a value')}, got {given!r}"
    return f"{error['msg']} (got {describe(given)})"


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    allowed = known_keys(loc[:-1])
    hint = did_you_mean(loc[-1], allowed)
    if hint:
        return "unknown field" + hint
    return "unknown field; expected one of " + ", ".join(sorted(allowed)) if allowed else ""


def known_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the schema allows in the mapping at pydantic ``loc`` (tags included)."""
    current: Any = Blueprint
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    models = [m for m in _members(current) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) != 1:
        return []
    return [field.alias or name for name, field in models[0].model_fields.items()]


def _members(tp: Any) -> list[Any]:
    """Unwrap Annotated and unions into the concrete member types."""
    if get_origin(tp) is Annotated:
        return _members(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in _members(arg) if m is not type(None)]
    return [tp]


def _step(tp: Any, part: str | int) -> Any:
    for member in _members(tp):
        if isinstance(part, int) and get_origin(member) is list:
            return get_args(member)[0]
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        for name, field in member.model_fields.items():
            if part == (field.alias or name):
                return field.annotation
        tag = member.model_fields.get("type")
        if tag is not None and get_args(tag.annotation) == (part,):
            return member
    return None
