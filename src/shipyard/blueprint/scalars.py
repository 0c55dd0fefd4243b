"""Scalars of a Blueprint: paths and positions into the file, YAML scalars that keep how they
were written, and the field validators the raw models share (model.py)."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]  # a path into the file's data: ("services", 1, "startCommand")
Positions = dict[Loc, tuple[int, int]]  # path -> (line, column), both 1-based


def format_path(loc: Loc) -> str:
    """("services", 1, "scaling") -> "services[1].scaling"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Dots are allowed: render-examples/temporal (an official Render template) sets Elasticsearch
# settings such as `xpack.security.enabled` and `discovery.type` as env var keys.
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_YAML11_BOOLS = {"yes": True, "on": True, "y": True, "no": False, "off": False, "n": False}


class Yaml11Bool(str):
    """A plain YAML scalar such as ``off`` or ``yes``: a string, as Render's Go YAML decoder
    (yaml.v3, YAML 1.2) reads it, except where the field is a boolean. So
    ``previews.generation: off`` is the string "off" (render-examples/sim-on-render and
    dify-render-template write it unquoted) while ``autoDeploy: no`` is still false."""

    @property
    def flag(self) -> bool:
        return _YAML11_BOOLS[self.lower()]


def yaml_bool(value: Any) -> Any:
    return value.flag if isinstance(value, Yaml11Bool) else value


def plain_str(value: Any) -> Any:
    return str(value) if isinstance(value, Yaml11Bool) else value


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("blueprint", message)


def service_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a service Shipyard runs (None if it can).

    Render itself accepts any name (ToolJet/ToolJet names services 'ToolJet' and 'PostgREST';
    Render's spec example has a Key Value instance named 'private cache'), so refs.py applies
    this only to the services Shipyard runs, which it addresses by name."""
    if _DNS_LABEL.match(name):
        return None
    hint = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    why = "uppercase letters are not allowed" if name.lower() != name else "not a DNS label"
    suggestion = f" Did you mean '{hint}'?" if hint and _DNS_LABEL.match(hint) else ""
    return (
        f"invalid service name '{name}' ({why}): use 1-63 lowercase letters, digits or '-', "
        f"not starting or ending with '-'.{suggestion}"
    )


def _env_key(key: str) -> str:
    if not _ENV_KEY.match(key):
        raise _fail(f"invalid environment variable name '{key}': expected [A-Za-z_][A-Za-z0-9_]*")
    return key


def _root_dir(value: str) -> str:
    if value.startswith("/"):
        raise _fail(f"'{value}' is absolute: rootDir is relative to the repository root")
    norm = posixpath.normpath(value) if value else "."
    if norm == ".." or norm.startswith("../"):
        raise _fail(f"'{value}' points outside the repository root")
    return "" if norm == "." else norm


def _health_path(value: str) -> str:
    if not value.startswith("/"):
        raise _fail(f"'{value}' must start with '/' (for example '/healthz')")
    return value


def _hostname(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    labels = host.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if not labels or len(host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise _fail(f"'{value}' is not a valid hostname (for example 'app.example.com')")
    return host


class YamlInt(int):
    """An integer scalar that remembers how it was written (``010``, ``0x1F``, ``1_000``)."""

    source: str

    def __new__(cls, value: int, source: str) -> YamlInt:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


class YamlFloat(float):
    """A float scalar that remembers how it was written: ``3.10`` must reach a process as
    "3.10" (PYTHON_VERSION), not "3.1" — Render passes env values as written."""

    source: str

    def __new__(cls, value: float, source: str) -> YamlFloat:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


def to_str(value: Any) -> Any:
    if isinstance(value, YamlInt | YamlFloat):
        return value.source
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _scalar(value: Any) -> Any:
    """Env values: YAML numbers and booleans become the strings a process sees."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlInt | YamlFloat):
        return value.source
    if isinstance(value, int | float | str):
        return str(value)
    raise _fail(f"expected a string, number or boolean, got {describe(value)}")


def describe(value: Any) -> str:
    """How a YAML value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{type(value).__name__} {value!r}"


ServiceName = Annotated[str, Field(min_length=1)]  # DNS-label rule: refs.py (runnable only)
Bool = Annotated[bool, BeforeValidator(yaml_bool)]
Str = Annotated[str, BeforeValidator(plain_str)]
EnvKey = Annotated[str, AfterValidator(_env_key)]
RootDir = Annotated[str, AfterValidator(_root_dir)]
HealthPath = Annotated[str, AfterValidator(_health_path)]
Hostname = Annotated[str, AfterValidator(_hostname)]
Runtime = Literal["docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static"]
Percent = Annotated[int, Field(ge=1, le=90)]
EnvValue = Annotated[str, BeforeValidator(_scalar)]
