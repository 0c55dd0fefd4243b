"""YAML with positions: plain data plus the (line, column) of every path, and the collected
problems of one file (reported together, each with file:line:col and the field path)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from shipyard.blueprint.scalars import Loc, Positions, Yaml11Bool, YamlFloat, YamlInt, format_path
from shipyard.errors import BlueprintError

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"


# --- problems -------------------------------------------------------------------------------


class Problems:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.positions: Positions = {}
        self.items: list[dict[str, Any]] = []

    def position(self, loc: Loc) -> tuple[int, int]:
        while loc not in self.positions and loc:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def where(self, loc: Loc) -> str:
        line, column = self.position(loc)
        return f"{self.filename}:{line}:{column}"

    def add(self, position: tuple[int, int], loc: Loc, message: str) -> None:
        item = {
            "file": self.filename,
            "line": position[0],
            "column": position[1],
            "path": format_path(loc),
            "message": message,
        }
        if item not in self.items:
            self.items.append(item)

    def add_at(self, loc: Loc, message: str) -> None:
        self.add(self.position(loc), loc, message)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        self.items.sort(key=lambda p: (p["line"], p["column"]))
        lines = [
            f"{p['file']}:{p['line']}:{p['column']}: "
            + (f"{p['path']}: " if p["path"] else "")
            + p["message"]
            for p in self.items
        ]
        count = len(lines)
        head = f"{self.filename}: {count} problem{'s' if count > 1 else ''}:\n"
        raise BlueprintError(head + "\n".join(lines), fields={"problems": list(self.items)})


# --- YAML with positions --------------------------------------------------------------------


def compose(text: str, problems: Problems) -> tuple[Any, Positions]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = re.sub(r"\s+", " ", " ".join(filter(None, [exc.context, exc.problem])))
        problems.add(where, (), f"YAML syntax error: {detail}")
        return None, {}
    except yaml.YAMLError as exc:
        problems.add((1, 1), (), f"YAML error: {exc}")
        return None, {}
    if node is None:
        return None, {}
    positions: Positions = {}
    walker = _Walker(problems, positions)
    return walker.build(node, ()), positions


class _Walker:
    """Turns YAML nodes into plain data, recording (line, col) of every path."""

    def __init__(self, problems: Problems, positions: Positions) -> None:
        self.problems = problems
        self.positions = positions
        self.constructor = SafeConstructor()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.positions.setdefault(loc, _pos(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
            # yes/no/on/off are booleans only in YAML 1.1; Render reads them as strings
            # except in boolean fields (see model.Yaml11Bool).
            return Yaml11Bool(node.value)
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, float):
            return YamlFloat(value, node.value)
        if isinstance(value, int) and not isinstance(value, bool):
            return YamlInt(value, node.value)
        return value

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge_source(value_node, loc))
                continue
            raw_key = self.constructor.construct_object(key_node, deep=True)
            key = raw_key if isinstance(raw_key, str) else str(raw_key)
            if key in result:
                first = self.positions[(*loc, key)]
                self.problems.add(
                    _pos(key_node),
                    (*loc, key),
                    f"duplicate key '{key}' (first defined at line {first[0]}, column {first[1]})",
                )
                continue
            self.positions[(*loc, key)] = _pos(key_node)
            result[key] = self.build(value_node, (*loc, key))
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge_source(self, node: yaml.Node, loc: Loc) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in sources:
            value = self.build(source, (*loc, "<<"))
            if isinstance(value, dict):
                for key, item in value.items():
                    merged.setdefault(key, item)
        return merged


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
