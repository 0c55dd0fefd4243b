"""Whether a commit deploys a service (pure): skip markers and ``buildFilter`` globs.

Render's rules, kept: a commit whose message holds ``[skip render]`` or ``[render skip]`` (and
Shipyard's ``[skip shipyard]``/``[shipyard skip]``) does not auto-deploy; ``buildFilter.paths``
(globs relative to the repository root) name the files whose change deploys the service,
``buildFilter.ignoredPaths`` the files whose change never does. Without ``paths``, a service
with a ``rootDir`` deploys for changes inside it, one without for any change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

SKIP_MARKERS = ("[skip render]", "[render skip]", "[skip shipyard]", "[shipyard skip]")


def skip_marker(message: str) -> str:
    """The skip marker in a commit message ("" when there is none); case-insensitive."""
    lowered = message.lower()
    return next((m for m in SKIP_MARKERS if m in lowered), "")


@dataclass(frozen=True)
class BuildFilter:
    paths: tuple[str, ...] = ()
    ignored_paths: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {"paths": list(self.paths), "ignoredPaths": list(self.ignored_paths)}

    @classmethod
    def from_dict(cls, data: dict[str, list[str]] | None) -> BuildFilter:
        data = data or {}
        return cls(tuple(data.get("paths") or ()), tuple(data.get("ignoredPaths") or ()))


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: ``**`` matches any number of directories, ``*`` and ``?``
    stay within one path segment, ``[...]`` is a character class; a pattern naming a
    directory (``src/`` or ``src``) matches everything under it."""
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    regex = "".join(out).rstrip("/")
    return re.compile(f"^{regex}(?:/.*)?$")


def matches(pattern: str, path: str) -> bool:
    return bool(_glob(pattern).match(path.lstrip("/")))


def touches(build_filter: BuildFilter, root_dir: str, files: Iterable[str] | None) -> bool:
    """True if a change to ``files`` (repository-relative paths; None = unknown, e.g. the first
    deploy or a force push) deploys the service."""
    if files is None:
        return True
    paths = build_filter.paths or ((f"{root_dir.strip('/')}/**",) if root_dir else ("**",))
    for path in files:
        if any(matches(p, path) for p in build_filter.ignored_paths):
            continue
        if any(matches(p, path) for p in paths):
            return True
    return False
