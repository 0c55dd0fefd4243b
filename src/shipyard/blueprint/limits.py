"""Bounds on a Blueprint file, checked before any work that grows with it: its size in bytes
(before decoding), how deeply its mappings and lists nest, and how many YAML nodes it has once
aliases are expanded (a few hundred bytes of nested aliases, the "billion laughs", expand to
billions). The CLI and the daemon read them from the environment (``from_env``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from shipyard.errors import UsageError

Limit = Literal["max_bytes", "max_depth", "max_nodes"]
SETTINGS: dict[Limit, str] = {
    "max_bytes": "SHIPYARD_BLUEPRINT_MAX_BYTES",
    "max_depth": "SHIPYARD_BLUEPRINT_MAX_DEPTH",
    "max_nodes": "SHIPYARD_BLUEPRINT_MAX_NODES",
}
# Composing and walking the file recurse once per level (a few frames each): past this a
# nesting limit would trade a clear error for a RecursionError.
DEPTH_CEILING = 128
_NAMES: dict[Limit, str] = {"max_bytes": "size", "max_depth": "nesting", "max_nodes": "node"}
_KIB, _MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class BlueprintLimits:
    max_bytes: int = _MIB
    max_depth: int = 64  # levels of mappings and lists (Render's examples: 10 at most)
    max_nodes: int = 100_000  # YAML nodes, aliases expanded (Render's largest example: ~650)

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            ceiling = DEPTH_CEILING if field.name == "max_depth" else None
            if _out_of_range(value, ceiling):
                raise ValueError(f"BlueprintLimits.{field.name} is {value!r}: {_expected(ceiling)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BlueprintLimits:
        """The limits set by SHIPYARD_BLUEPRINT_MAX_{BYTES,DEPTH,NODES}; unset or empty
        variables keep the defaults."""
        values: dict[str, int] = {}
        for limit, name in SETTINGS.items():
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            ceiling = DEPTH_CEILING if limit == "max_depth" else None
            value = int(raw) if raw.isascii() and raw.isdigit() else None
            if value is None or _out_of_range(value, ceiling):
                raise UsageError(
                    f"{name} has value {raw!r}. Expected {_expected(ceiling)}.",
                    fields={"setting": name, "value": raw},
                )
            values[limit] = value
        return cls(**values)

    def breach(self, limit: Limit, value: int) -> tuple[str, dict[str, Any]]:
        """The message and fields for ``value`` found over ``limit``: what was found, the
        limit, and the setting that raises it."""
        bound: int = getattr(self, limit)
        if limit == "max_bytes":
            found, allowed = _sizes(value, bound)
        elif limit == "max_depth":
            found, allowed = f"nesting at least {value} levels deep", f"{bound} levels"
        else:
            found, allowed = f"at least {value:,} YAML nodes with aliases expanded", f"{bound:,}"
        message = (
            f"{found} is over the Blueprint {_NAMES[limit]} limit of {allowed} "
            f"(raise it with {SETTINGS[limit]})"
        )
        return message, {"limit": bound, "value": value, "setting": SETTINGS[limit]}


def _out_of_range(value: object, ceiling: int | None) -> bool:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return True
    return ceiling is not None and value > ceiling


def _expected(ceiling: int | None) -> str:
    return f"a whole number from 1 to {ceiling}" if ceiling else "a whole number of at least 1"


def _sizes(value: int, bound: int) -> tuple[str, str]:
    """Both sizes in words: "20.0 MiB" and "1 MiB"; in bytes when rounding would make them look
    alike ("1048577 bytes" and "1048576 bytes")."""
    found = _size(value, exact=False)
    if found == _size(bound, exact=False):
        return f"{value} bytes", f"{bound} bytes"
    return found, _size(bound, exact=True)


def _size(n: int, *, exact: bool) -> str:
    for unit, name in ((_MIB, "MiB"), (_KIB, "KiB")):
        if n >= unit:
            whole = exact and n % unit == 0
            return f"{n // unit} {name}" if whole else f"{n / unit:.1f} {name}"
    return f"{n} bytes"


DEFAULT_LIMITS = BlueprintLimits()
