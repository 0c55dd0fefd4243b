"""YAML with positions: plain data plus the (line, column) of every path, and the collected
problems of one file (reported together, each with file:line:col and the field path)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from shipyard.blueprint.limits import BlueprintLimits, Limit
from shipyard.blueprint.scalars import (
    YAML11_BOOLS,
    Loc,
    Positions,
    Yaml11Bool,
    YamlFloat,
    YamlInt,
    format_path,
)
from shipyard.errors import BlueprintError, LimitExceeded

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# libyaml refuses flow collections nested deeper than this while it scans ahead for keys, so a
# long run of "[" can reach its limit before the composer has counted past ours.
LIBYAML_MAX_DEPTH = 1000
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


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
            "path": _printable(format_path(loc)),
            "message": _printable(message),
        }
        if item not in self.items:
            self.items.append(item)

    def add_at(self, loc: Loc, message: str) -> None:
        self.add(self.position(loc), loc, message)

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()

    def error(self) -> BlueprintError:
        """Every problem, in file order, as one BlueprintError."""
        self.items.sort(key=lambda p: (p["line"], p["column"]))
        lines = [
            f"{p['file']}:{p['line']}:{p['column']}: "
            + (f"{p['path']}: " if p["path"] else "")
            + p["message"]
            for p in self.items
        ]
        count = len(lines)
        head = f"{self.filename}: {count} problem{'s' if count > 1 else ''}:\n"
        return BlueprintError(head + "\n".join(lines), fields={"problems": list(self.items)})


def _printable(text: str) -> str:
    """``text`` with the unprintable characters of quoted values escaped, so that each problem
    stays on its own line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# --- YAML with positions --------------------------------------------------------------------


class NotYaml(Exception):
    """The text is not YAML. ``detail`` is PyYAML's account, which may quote the text;
    ``top_keys`` are the top-level keys read before the failure: they tell a broken Blueprint,
    whose text may be quoted back, from some other file, whose text must not be."""

    def __init__(self, position: tuple[int, int], detail: str, top_keys: list[str]) -> None:
        super().__init__(detail)
        self.position = position
        self.detail = detail
        self.top_keys = top_keys


def file_error(
    filename: str, message: str, position: tuple[int, int] | None = None, **fields: Any
) -> BlueprintError:
    """One problem with the whole file (its size, its kind, a limit), as a BlueprintError."""
    line, column = position or (1, 1)
    where = f"{filename}:{line}:{column}" if position else filename
    item = {"file": filename, "line": line, "column": column, "path": "", "message": message}
    return BlueprintError(f"{where}: {message}", fields={**fields, "problems": [item]})


def limit_error(
    filename: str, message: str, position: tuple[int, int] | None = None, **fields: Any
) -> LimitExceeded:
    """A limit breached (size, nesting, nodes): invalid input like a bad flag (exit code 2,
    HTTP 413), with the limit, the value found and its setting in ``fields``."""
    problem = file_error(filename, message, position, **fields)
    return LimitExceeded(problem.message, fields=problem.fields)


def compose(text: str, problems: Problems, limits: BlueprintLimits) -> tuple[Any, Positions]:
    """Plain data and the position of every path in ``text``. Raises NotYaml, or BlueprintError
    when the text breaks one of ``limits`` (checked while composing, before any data is built).
    """
    unprintable = Reader.NON_PRINTABLE.search(text)
    if unprintable:
        raise file_error(
            problems.filename,
            "not YAML text: a control character, or another character YAML does not allow "
            "(a Blueprint is UTF-8 YAML text)",
            _line_column(text, unprintable.start()),
        )
    loader = _Loader(text, limits, problems.filename)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        if exc.problem == _LIBYAML_TOO_DEEP:  # it looks ahead, so it can see this before us
            message, fields = limits.breach("max_depth", LIBYAML_MAX_DEPTH + 1)
            raise limit_error(problems.filename, message, where, **fields) from None
        detail = re.sub(r"\s+", " ", " ".join(filter(None, [exc.context, exc.problem])))
        raise NotYaml(where, f"YAML syntax error: {detail}", loader.top_keys) from None
    except yaml.YAMLError as exc:
        raise NotYaml((1, 1), f"YAML error: {exc}", loader.top_keys) from None
    finally:
        loader.dispose()
    if node is None:
        return None, {}
    positions: Positions = {}
    walker = _Walker(problems, positions)
    return walker.build(node, ()), positions


def _line_column(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


# libyaml parses in C, and does not rescan the line ahead for each "[" of a deep flow
# collection as PyYAML's scanner does (10,000 "[" take that one 0.8 s to reach the 65th).
if yaml.__with_libyaml__:
    from yaml._yaml import CParser as _Events
else:  # pragma: no cover - a PyYAML built without libyaml

    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)


class _Loader(Composer, _Events, Resolver):
    """PyYAML's composer, bounded: it counts levels and nodes (each alias as the nodes of what
    it names) as events arrive, and stops at the first over ``limits``. The graph it builds
    shares aliased nodes, so it stays as small as the text; only the walk expands aliases, and
    it runs only on a graph within the limits."""

    def __init__(self, text: str, limits: BlueprintLimits, filename: str) -> None:
        _Events.__init__(self, text)
        Composer.__init__(self)
        Resolver.__init__(self)
        self.limits = limits
        self.filename = filename
        self.nodes = 0  # nodes so far, aliases expanded
        self.depth = 0  # collections open around the next event
        self.reach = 0  # the deepest level reached (aliases expanded) in the current node
        self.expanded: dict[int, tuple[int, int]] = {}  # anchored node -> (nodes, height)
        self.top_keys: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            self._alias(node, event)
            return node
        opens = isinstance(event, CollectionStartEvent)
        level = self.depth + opens
        outer_reach, first = self.reach, self.nodes
        self._grow(1, level, event.start_mark)
        self.depth = self.reach = level
        node = super().compose_node(parent, index)
        self.depth = level - opens
        if event.anchor is not None:
            self.expanded[id(node)] = (self.nodes - first, self.reach - self.depth)
        self.reach = max(outer_reach, self.reach)
        if self.depth == 1 and index is None and isinstance(node, yaml.ScalarNode):
            self.top_keys.append(str(node.value))  # a key of the top-level mapping
        return node

    def _alias(self, node: yaml.Node | None, event: AliasEvent) -> None:
        measured = self.expanded.get(id(node))
        if measured is None:  # the anchored node is still open: the alias is inside it
            raise file_error(
                self.filename,
                "recursive alias: it names a node that contains it, so it expands without end",
                _mark(event.start_mark),
            )
        nodes, height = measured
        self._grow(nodes, self.depth + height, event.start_mark)

    def _grow(self, nodes: int, level: int, mark: Any) -> None:
        self.nodes += nodes
        self.reach = max(self.reach, level)
        breach: tuple[Limit, int] | None = None
        if level > self.limits.max_depth:
            breach = ("max_depth", level)
        elif self.nodes > self.limits.max_nodes:
            breach = ("max_nodes", self.nodes)
        if breach:
            message, fields = self.limits.breach(*breach)
            raise limit_error(self.filename, message, _mark(mark), **fields)


def _mark(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


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
        if node.tag == _BOOL_TAG and node.value.lower() in YAML11_BOOLS:
            # yes/no/on/off are booleans only in YAML 1.1; Render reads them as strings
            # except in boolean fields (see model.Yaml11Bool).
            return Yaml11Bool(node.value)
        value = self._construct(node, loc)
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
            raw_key = self._construct(key_node, loc)
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

    def _construct(self, node: yaml.Node, loc: Loc) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception:  # an explicit tag PyYAML cannot apply: ValueError for `!!int x`, ...
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.problems.add(_pos(node), loc, f"cannot read this value as {tag}")
            return None

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
