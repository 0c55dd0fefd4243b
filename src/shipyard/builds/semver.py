"""npm's version ranges, enough to choose a Node, npm or corepack version (pure).

Supports what ``.nvmrc``, ``.node-version``, ``NODE_VERSION`` and ``engines`` fields hold in
practice: exact versions (``18.20.4``, ``v18``), partial and x-ranges (``18``, ``18.x``, ``*``),
comparators (``>=18 <21``), caret and tilde (``^20.1``, ``~18.19``), hyphen ranges
(``18 - 20``) and unions (``^18.17 || >=20.5``). Pre-release versions never match (Node's
published versions have none).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

Version = tuple[int, int, int]

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$")
_COMPARATOR = re.compile(r"^(<=|>=|<|>|=|\^|~>|~)?\s*(.*)$")


def parse_version(text: str) -> Version | None:
    """``18.20.4`` or ``v18.20.4`` -> (18, 20, 4); None for anything else (pre-releases too)."""
    m = _VERSION.match(text.strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def format_version(v: Version) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


@dataclass(frozen=True)
class _Bound:
    op: str  # one of >=, >, <, <=
    version: Version

    def ok(self, v: Version) -> bool:
        return {
            ">=": v >= self.version,
            ">": v > self.version,
            "<": v < self.version,
            "<=": v <= self.version,
        }[self.op]


class RangeError(ValueError):
    pass


def _partial(text: str) -> tuple[int | None, int | None, int | None]:
    m = _PARTIAL.match(text)
    if m is None:
        raise RangeError(f"not a version: {text!r}")
    parts: list[int | None] = []
    for group in (m[1], m[2], m[3]):
        parts.append(None if group is None or group in "xX*" else int(group))
    # anything after a wildcard is a wildcard too (18.x.3 means 18.x)
    for i in range(3):
        if parts[i] is None:
            parts[i + 1 :] = [None] * (2 - i)
            break
    return parts[0], parts[1], parts[2]


def _comparator(text: str) -> list[_Bound]:
    m = _COMPARATOR.match(text)
    assert m is not None
    op, rest = m[1] or "", m[2].strip()
    major, minor, patch = _partial(rest or "*")
    if major is None:
        return [] if op in ("", "=", ">=", "<=", "^", "~", "~>") else [_Bound("<", (0, 0, 0))]
    lo: Version = (major, minor or 0, patch or 0)
    if op in ("", "="):
        if minor is None:
            return [_Bound(">=", lo), _Bound("<", (major + 1, 0, 0))]
        if patch is None:
            return [_Bound(">=", lo), _Bound("<", (major, minor + 1, 0))]
        return [_Bound(">=", lo), _Bound("<=", lo)]
    if op == "^":
        if major > 0 or minor is None:
            return [_Bound(">=", lo), _Bound("<", (major + 1, 0, 0))]
        if minor > 0 or patch is None:
            return [_Bound(">=", lo), _Bound("<", (0, minor + 1, 0))]
        return [_Bound(">=", lo), _Bound("<", (0, 0, patch + 1))]
    if op in ("~", "~>"):
        if minor is None:
            return [_Bound(">=", lo), _Bound("<", (major + 1, 0, 0))]
        return [_Bound(">=", lo), _Bound("<", (major, minor + 1, 0))]
    if op == ">":
        if minor is None:
            return [_Bound(">=", (major + 1, 0, 0))]
        if patch is None:
            return [_Bound(">=", (major, minor + 1, 0))]
        return [_Bound(">", lo)]
    if op == "<=":
        if minor is None:
            return [_Bound("<", (major + 1, 0, 0))]
        if patch is None:
            return [_Bound("<", (major, minor + 1, 0))]
        return [_Bound("<=", lo)]
    return [_Bound(op, lo)]  # >= and <: the missing parts are zeros


def _hyphen(low: str, high: str) -> list[_Bound]:
    bounds = [b for b in _comparator(">=" + low) if b.op.startswith(">")]
    return bounds + [b for b in _comparator("<=" + high) if b.op.startswith("<")]


@dataclass(frozen=True)
class Range:
    """A parsed npm range: a union of intersections of bounds."""

    text: str
    sets: tuple[tuple[_Bound, ...], ...]

    def matches(self, v: Version) -> bool:
        return any(all(b.ok(v) for b in bounds) for bounds in self.sets)

    def best(self, versions: Iterable[Version]) -> Version | None:
        """The newest of ``versions`` in the range."""
        return max((v for v in versions if self.matches(v)), default=None)


def parse_range(text: str) -> Range:
    """Parse an npm range; RangeError when it is not one."""
    sets: list[tuple[_Bound, ...]] = []
    for alternative in text.split("||"):
        alt = alternative.strip()
        hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", alt)
        if hyphen:
            sets.append(tuple(_hyphen(hyphen[1], hyphen[2])))
            continue
        # "> = 18" and ">= 18" both mean ">=18": glue operators to their version
        alt = re.sub(r"(<=|>=|<|>|=|\^|~>|~)\s+", r"\1", alt)
        bounds: list[_Bound] = []
        for token in alt.split() or ["*"]:
            bounds.extend(_comparator(token))
        sets.append(tuple(bounds))
    return Range(text=text.strip(), sets=tuple(sets))


def satisfies(version: Version, text: str) -> bool:
    """``version`` lies in the npm range ``text`` (False when ``text`` is not a range)."""
    try:
        return parse_range(text).matches(version)
    except RangeError:
        return False
