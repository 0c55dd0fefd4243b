"""Load a Blueprint file: YAML (with positions) -> strict model -> checks -> ``LoadedBlueprint``.

Every problem found is collected and reported at once, each as ``file:line:col: path: message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeGuard

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor

from shipyard.blueprint import refs
from shipyard.blueprint.model import (
    NATIVE_RUNTIMES,
    Blueprint,
    EnvVar,
    EnvVarSpec,
    FromService,
    GroupEnvVar,
    Loc,
    Positions,
    PrivateService,
    ServiceSpec,
    WebService,
    WorkerService,
    format_path,
)
from shipyard.blueprint.schema import did_you_mean, explain
from shipyard.errors import BlueprintError

Kind = Literal["render", "shipyard"]
SHIPYARD_NAMES = ("shipyard.yaml", "shipyard.yml")
RENDER_NAMES = ("render.yaml", "render.yml")
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Notice:
    """A field accepted but not acted on."""

    location: str  # "render.yaml:12:5"
    path: str  # "services[1].scaling"
    message: str


@dataclass(frozen=True)
class LoadedBlueprint:
    path: Path
    root: Path  # directory holding the file: the repository root (rootDir is relative to it)
    kind: Kind
    services: tuple[ServiceSpec, ...]  # only the services Shipyard runs now, in file order
    groups: Mapping[str, tuple[EnvVarSpec, ...]]  # envVarGroups by name
    notices: tuple[Notice, ...]

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        names = [spec.name for spec in self.services]
        raise BlueprintError(
            f"{self.path.name}: no service '{name}'{did_you_mean(name, names)} "
            f"(services: {', '.join(names) or 'none'})",
            fields={"service": name, "services": names},
        )


# --- public API -----------------------------------------------------------------------------


def find_blueprint(directory: Path) -> Path:
    """The Blueprint in ``directory``: shipyard.yaml/.yml preferred, else render.yaml/.yml."""
    for name in SHIPYARD_NAMES + RENDER_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise BlueprintError(
        f"no Blueprint in {directory}: expected one of {', '.join(SHIPYARD_NAMES + RENDER_NAMES)}",
        fields={"directory": str(directory)},
    )


def load_blueprint(path: Path) -> LoadedBlueprint:
    kind: Kind = "shipyard" if path.name in SHIPYARD_NAMES else "render"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError(f"cannot read {path}: {exc}", fields={"path": str(path)}) from exc
    loaded = parse_blueprint(text, filename=path.name, kind=kind)
    return LoadedBlueprint(
        path=path,
        root=path.parent,
        kind=kind,
        services=loaded.services,
        groups=loaded.groups,
        notices=loaded.notices,
    )


def parse_blueprint(text: str, *, filename: str, kind: Kind) -> LoadedBlueprint:
    """Parse and validate Blueprint text; raise one BlueprintError listing every problem."""
    problems = _Problems(filename)
    data, positions = _compose(text, problems)
    if not isinstance(data, dict):
        if not problems.items:
            what = "an empty file" if data is None else f"a {type(data).__name__}"
            problems.add((1, 1), (), f"expected a mapping with 'services' at the top, got {what}")
        problems.raise_if_any()
    problems.positions = positions
    model: Blueprint | None = None
    try:
        model = Blueprint.model_validate(data)
    except ValidationError as exc:
        for loc, message in explain(exc, data):
            problems.add_at(loc, message)
    for loc, message in refs.check(data, kind, positions):
        problems.add_at(loc, message)
    problems.raise_if_any()
    assert model is not None  # validation succeeded: no problems were recorded
    services = tuple(_service_spec(s) for s in model.services if _runs_now(s))
    groups = {g.name: tuple(_env_spec(e) for e in g.env_vars) for g in model.env_var_groups}
    ordered = sorted(_notices(data), key=lambda notice: problems.position(notice[0]))
    notices = tuple(
        Notice(location=problems.where(loc), path=format_path(loc), message=message)
        for loc, message in ordered
    )
    path = Path(filename)
    return LoadedBlueprint(
        path=path,
        root=path.parent,
        kind=kind,
        services=services,
        groups=MappingProxyType(groups),
        notices=notices,
    )


# --- normalized specs -----------------------------------------------------------------------

Runnable = WebService | PrivateService | WorkerService


def _runs_now(svc: object) -> TypeGuard[Runnable]:
    """web/pserv/worker on a native runtime: what Shipyard runs in this version."""
    if not isinstance(svc, WebService | PrivateService | WorkerService):
        return False
    return (svc.runtime or svc.env) in NATIVE_RUNTIMES


def _service_spec(svc: Runnable) -> ServiceSpec:
    domains: list[str] = []
    if isinstance(svc, WebService):
        domains = ([svc.domain] if svc.domain else []) + (svc.domains or [])
    return ServiceSpec(
        name=svc.name,
        type=svc.type,
        runtime=str(svc.runtime or svc.env),
        root_dir=svc.root_dir or "",
        build_command=svc.build_command,
        start_command=svc.start_command or "",
        pre_deploy_command=svc.pre_deploy_command,
        health_check_path=svc.health_check_path,
        num_instances=svc.num_instances,
        max_shutdown_delay_seconds=svc.max_shutdown_delay_seconds,
        env_vars=tuple(_env_spec(e) for e in svc.env_vars),
        domains=tuple(dict.fromkeys(domains)),
        health_check_timeout_seconds=svc.health_check_timeout_seconds,
        drain_timeout_seconds=svc.drain_timeout_seconds,
    )


def _env_spec(item: EnvVar | GroupEnvVar) -> EnvVarSpec:
    if isinstance(item, GroupEnvVar):
        return EnvVarSpec(key=item.key, value=item.value, generate=bool(item.generate_value))
    ref, db = item.from_service, item.from_database
    return EnvVarSpec(
        key=item.key,
        value=item.value,
        generate=bool(item.generate_value),
        sync=item.sync is not False,
        from_service=FromService(
            type="keyvalue" if ref.type == "redis" else ref.type,
            name=ref.name,
            property=ref.property,
            env_var_key=ref.env_var_key,
        )
        if ref
        else None,
        from_database=(db.name, db.property) if db else None,
        from_group=item.from_group,
    )


# --- notices --------------------------------------------------------------------------------

_NO_MEANING = {
    "plan": "ignored: Shipyard runs on one machine, there are no instance plans",
    "region": "ignored: Shipyard runs on one machine, there are no regions",
    "repo": "ignored: Shipyard builds the source you deploy, it does not pull a repository",
    "branch": "ignored: Shipyard builds the source you deploy, it does not pull a branch",
}
_NOT_YET = {
    "scaling": "autoscaling (scaling)",
    "disk": "persistent disks (disk)",
    "autoDeployTrigger": "auto-deploy (autoDeployTrigger)",
    "autoDeploy": "auto-deploy (autoDeploy)",
    "buildFilter": "build filters (buildFilter)",
    "ipAllowList": "IP allow lists (ipAllowList)",
    "initialDeployHook": "the initial deploy hook (initialDeployHook)",
    "dockerfilePath": "Docker builds (dockerfilePath)",
    "dockerContext": "Docker builds (dockerContext)",
    "dockerCommand": "Docker builds (dockerCommand)",
    "image": "prebuilt images (image)",
    "registryCredential": "prebuilt images (registryCredential)",
    "previews": "preview environments (previews)",
    "pullRequestPreviewsEnabled": "preview environments (pullRequestPreviewsEnabled)",
}
_ROOT_NOT_YET = {
    "previews": "preview environments (previews)",
    "previewsEnabled": "preview environments (previewsEnabled)",
    "previewsExpireAfterDays": "preview environments (previewsExpireAfterDays)",
    "projects": "projects and environments (projects); put services at the top level",
    "ungrouped": "ungrouped resources (ungrouped); put services at the top level",
}


def _notices(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    running = {s["name"] for s in data.get("services") or [] if _runs_now_raw(s)}
    for i, svc in enumerate(data.get("services") or []):
        loc: Loc = ("services", i)
        skipped = _skipped_service(svc)
        if skipped:
            out.append((loc, f"not supported yet: {skipped} is not run in this version"))
            continue
        out += [((*loc, k), m) for k, m in _NO_MEANING.items() if k in svc]
        out += [
            ((*loc, k), f"not supported yet: {what} is ignored in this version")
            for k, what in _NOT_YET.items()
            if k in svc
        ]
        for j, item in enumerate(svc.get("envVars") or []):
            message = _env_notice(item, running)
            if message:
                out.append(((*loc, "envVars", j), message))
    for i, db in enumerate(data.get("databases") or []):
        what = f"database '{db['name']}' (PostgreSQL) is not created in this version"
        out.append((("databases", i), f"not supported yet: {what}"))
    out += [
        ((k,), f"not supported yet: {w} is ignored") for k, w in _ROOT_NOT_YET.items() if k in data
    ]
    return out


def _runs_now_raw(svc: dict[str, Any]) -> bool:
    return svc.get("type") in ("web", "pserv", "worker") and (
        svc.get("runtime", svc.get("env")) in NATIVE_RUNTIMES
    )


def _skipped_service(svc: dict[str, Any]) -> str | None:
    name, kind = svc["name"], svc["type"]
    runtime = svc.get("runtime", svc.get("env"))
    if kind == "cron":
        return f"cron job '{name}'"
    if kind in ("keyvalue", "redis"):
        alias = " (type 'redis' is the deprecated name of 'keyvalue')" if kind == "redis" else ""
        return f"Key Value instance '{name}'{alias}"
    if runtime == "static":
        return f"static site '{name}'"
    if runtime in ("docker", "image"):
        return f"{runtime} service '{name}' (runtime: {runtime})"
    return None


def _env_notice(item: dict[str, Any], running: set[str]) -> str | None:
    key = item.get("key")
    if item.get("sync") is False:
        return f"{key} is left unset (sync: false): its value is supplied outside the file"
    if "fromDatabase" in item:
        db = item["fromDatabase"]["name"]
        return f"not supported yet: {key} (fromDatabase '{db}') is left unset: no managed databases"
    ref = item.get("fromService")
    if ref and ref["name"] not in running:
        name = ref["name"]
        return f"not supported yet: {key} (fromService '{name}') is left unset: '{name}' is not run"
    return None


# --- problems -------------------------------------------------------------------------------


class _Problems:
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


def _compose(text: str, problems: _Problems) -> tuple[Any, Positions]:
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

    def __init__(self, problems: _Problems, positions: Positions) -> None:
        self.problems = problems
        self.positions = positions
        self.constructor = SafeConstructor()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.positions.setdefault(loc, _pos(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)

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
