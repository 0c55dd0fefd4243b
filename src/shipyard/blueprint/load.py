"""Load a Blueprint file: YAML (with positions) -> strict model -> checks -> ``LoadedBlueprint``.

Every problem found is collected and reported at once, each as ``file:line:col: path: message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeGuard

from pydantic import ValidationError

from shipyard.blueprint import refs
from shipyard.blueprint.model import (
    NATIVE_RUNTIMES,
    Blueprint,
    EnvVar,
    GroupEnvVar,
    PrivateService,
    WebService,
    WorkerService,
)
from shipyard.blueprint.positions import Problems, compose
from shipyard.blueprint.scalars import Loc, format_path
from shipyard.blueprint.schema import did_you_mean, explain
from shipyard.blueprint.spec import EnvVarSpec, FromService, ServiceSpec
from shipyard.errors import BlueprintError

Kind = Literal["render", "shipyard"]
SHIPYARD_NAMES = ("shipyard.yaml", "shipyard.yml")
RENDER_NAMES = ("render.yaml", "render.yml")


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
    problems = Problems(filename)
    data, positions = compose(text, problems)
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
    defined = {
        section: {str(entry.get("name")) for entry in data.get(section) or []}
        for section in ("services", "databases", "envVarGroups")
    }
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
            message = _env_notice(item, running, defined)
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


_ELSEWHERE = "is not defined in this file (on Render it must exist in the workspace)"


def _env_notice(
    item: dict[str, Any], running: set[str], defined: dict[str, set[str]]
) -> str | None:
    key = item.get("key")
    sync = item.get("sync")
    if sync is False or (isinstance(sync, str) and sync.lower() in ("no", "off")):
        return f"{key} is left unset (sync: false): its value is supplied outside the file"
    group = item.get("fromGroup")
    if isinstance(group, str) and group not in defined["envVarGroups"]:
        return f"envVarGroup '{group}' {_ELSEWHERE}: its variables are not added"
    if "fromDatabase" in item:
        db = item["fromDatabase"]["name"]
        if db not in defined["databases"]:
            return f"{key} is left unset: database '{db}' {_ELSEWHERE}"
        return f"not supported yet: {key} (fromDatabase '{db}') is left unset: no managed databases"
    ref = item.get("fromService")
    if ref and ref["name"] not in defined["services"]:
        return f"{key} is left unset: service '{ref['name']}' {_ELSEWHERE}"
    if ref and ref["name"] not in running:
        name = ref["name"]
        return f"not supported yet: {key} (fromService '{name}') is left unset: '{name}' is not run"
    return None
