"""References between Blueprint entries: checking them, resolving env vars, ordering deploys.

``check`` works on the raw file data (so it still runs when the schema found problems, and
every problem is reported at once); ``resolve_env`` and ``dependency_order`` work on the
normalized specs. Pure: no I/O except ``secrets.token_bytes``.
"""

from __future__ import annotations

import base64
import difflib
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.blueprint.model import NATIVE_RUNTIMES
from shipyard.blueprint.scalars import Loc, format_path, normal_host, service_name_problem
from shipyard.blueprint.schema import did_you_mean
from shipyard.blueprint.spec import EnvVarSpec, FromService, ServiceSpec

EXTENSIONS = ("healthCheckTimeoutSeconds", "drainTimeoutSeconds", "backupBeforeDeploy",
              "maxRunSeconds")  # fmt: skip
DATASTORE_EXTENSIONS = ("backups",)
_ENV_FORMS = ("value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup")
_NEEDS_RUNTIME = ("web", "pserv", "worker", "cron")
_STATIC_ONLY = ("staticPublishPath", "headers", "routes")
_NOT_RUN = ("keyvalue", "redis")  # service types Shipyard does not run (as services)
_NOT_RUN_RUNTIMES = ("docker", "image", "static")
# A reference to a name this file does not define is valid on Render when the workspace has
# it ("You can reference a service that isn't in the Blueprint, but that service must exist in
# your workspace", blueprint-spec; render-examples/postgres-s3-backups reads a database it does
# not define, ToolJet/ToolJet a group). It is an error only when it is this close to a name the
# file does define, i.e. most likely a typo ('serch' for 'search' is 0.91).
TYPO_CUTOFF = 0.8
Problem = tuple[Loc, str]
_MISSING = object()
ENV_MAX_BYTES = 1024 * 1024


def likely_typo(name: object, defined: list[str]) -> str | None:
    """The defined name ``name`` is probably a misspelling of, if any."""
    matches = difflib.get_close_matches(str(name), defined, n=1, cutoff=TYPO_CUTOFF)
    return matches[0] if matches else None


# --- checks on the raw data -----------------------------------------------------------------


def _dicts(data: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(key) if isinstance(data, dict) else None
    if isinstance(items, list):
        yield from ((i, item) for i, item in enumerate(items) if isinstance(item, dict))


def _type(service: Mapping[str, Any]) -> str:
    kind = service.get("type")
    return "keyvalue" if kind == "redis" else str(kind)


def check(
    data: dict[str, Any], kind: str, positions: Mapping[Loc, tuple[int, int]]
) -> list[Problem]:
    """Problems the schema cannot see: names, references, legacy clashes, extensions."""
    problems = _check_names(data, positions)
    services: dict[str, str] = {}
    for _, svc in _dicts(data, "services"):
        if isinstance(svc.get("name"), str):
            services.setdefault(svc["name"], _type(svc))
    databases = [str(db.get("name")) for _, db in _dicts(data, "databases")]
    databases += [str(r.get("name")) for _, db in _dicts(data, "databases")
                  for _, r in _dicts(db, "readReplicas")]  # fmt: skip
    groups = [str(g.get("name")) for _, g in _dicts(data, "envVarGroups")]
    for i, svc in _dicts(data, "services"):
        loc: Loc = ("services", i)
        problems += _check_service(svc, loc, kind)
        env_keys: dict[str, int] = {}
        for j, item in _dicts(svc, "envVars"):
            item_loc: Loc = (*loc, "envVars", j)
            problems += _check_env_item(item, item_loc, services, databases, groups)
            key = item.get("key")
            if isinstance(key, str) and key in env_keys:
                problems.append(
                    ((*item_loc, "key"), f"duplicate key '{key}' (also envVars[{env_keys[key]}])")
                )
            elif isinstance(key, str):
                env_keys[key] = j
    problems += _check_datastores(data, kind)
    return problems + _check_groups(data) + _check_domains(data) + _check_env_sizes(data)


def _check_datastores(data: dict[str, Any], kind: str) -> list[Problem]:
    """Databases, their read replicas and Key Value instances share one namespace in Shipyard
    (`shipyard db NAME` addresses any of them); their names become directory names."""
    problems: list[Problem] = []
    entries: list[tuple[Loc, Mapping[str, Any]]] = []
    for i, db in _dicts(data, "databases"):
        entries.append((("databases", i), db))
        entries += [(("databases", i, "readReplicas", j), r) for j, r in _dicts(db, "readReplicas")]
    entries += [
        (("services", i), svc) for i, svc in _dicts(data, "services") if _type(svc) == "keyvalue"
    ]
    seen: dict[str, Loc] = {}
    for loc, entry in entries:
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        problem = datastore_name_problem(name)
        if problem:
            problems.append(((*loc, "name"), problem))
        first = seen.setdefault(name, loc)
        # Two databases, or two services, with one name are reported by _check_names.
        same_section = len(first) == len(loc) == 2 and first[0] == loc[0]
        if first != loc and not same_section:
            problems.append(
                ((*loc, "name"), f"name '{name}' is also used by {format_path(first)}: "
                 "databases, read replicas and Key Value instances need distinct names")
            )  # fmt: skip
        if kind == "render" and len(loc) == 2:
            problems += [
                ((*loc, f), "is a Shipyard extension: move it to shipyard.yaml")
                for f in DATASTORE_EXTENSIONS
                if f in entry
            ]
    return problems


def datastore_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a datastore (None if it can): Render allows spaces ('private
    cache' in its spec), so only what a command line or a file name cannot carry is refused."""
    if name and not name.strip():
        return "blank name"
    if len(name) > 100:
        return f"name of {len(name)} characters: at most 100"
    if any(ord(c) < 32 or c in "/\\" for c in name) or name in (".", ".."):
        return f"invalid name {name!r}: no '/', '\\' or control characters"
    return None


def runs(svc: Mapping[str, Any]) -> bool:
    """A web/pserv/worker/cron on a native runtime: a service Shipyard runs."""
    return svc.get("type") in ("web", "pserv", "worker", "cron") and (
        svc.get("runtime", svc.get("env")) in NATIVE_RUNTIMES
    )


def _check_domains(data: dict[str, Any]) -> list[Problem]:
    """The edge routes a domain to one service, and refuses a table where two share one."""
    return _domain_problems([(("services", i), svc) for i, svc in _dicts(data, "services")])


def _domain_problems(services: Sequence[tuple[Loc, Mapping[str, Any]]]) -> list[Problem]:
    problems: list[Problem] = []
    owners: dict[str, tuple[Loc, str]] = {}
    for i, svc in services:
        if svc.get("type") != "web" or not runs(svc):
            continue
        listed = svc.get("domains")
        domains = listed if isinstance(listed, list) else []
        entries: list[tuple[Loc, object]] = [(("domain",), svc.get("domain"))]
        entries += [(("domains", j), domain) for j, domain in enumerate(domains)]
        for path, domain in entries:
            if not isinstance(domain, str):
                continue
            host = normal_host(domain)
            owner = owners.setdefault(host, (i, str(svc.get("name"))))
            if owner[0] != i:
                message = f"domain '{host}' is also a domain of service '{owner[1]}' " + (
                    f"({format_path(owner[0])}): a domain routes to one service"
                )
                problems.append(((*i, *path), message))
    return problems


def _check_env_sizes(data: dict[str, Any]) -> list[Problem]:
    """A process is given at most ARG_MAX (2 MiB on Linux) of arguments and environment in
    all; a service's Blueprint variables may take half, leaving the rest to Shipyard's own."""
    group_sizes = {
        g.get("name"): sum(_env_size(item) for _, item in _dicts(g, "envVars"))
        for _, g in _dicts(data, "envVarGroups")
    }
    problems: list[Problem] = []
    for i, svc in _dicts(data, "services"):
        items = [item for _, item in _dicts(svc, "envVars")] if runs(svc) else []
        size = sum(_env_size(item) + group_sizes.get(item.get("fromGroup"), 0) for item in items)
        if size > ENV_MAX_BYTES:
            problems.append(
                (
                    ("services", i, "envVars"),
                    f"{size / 1024:.0f} KiB of environment variables (with their groups): "
                    f"a service can be given at most {ENV_MAX_BYTES // 1024} KiB",
                )
            )
    return problems


def _env_size(item: Mapping[str, Any]) -> int:
    """Bytes of ``KEY=value`` and its terminating NUL, for a literal value."""
    key, value = item.get("key"), item.get("value")
    if not isinstance(key, str) or value is None:
        return 0
    return len(f"{key}={value}".encode(errors="surrogatepass")) + 1


def _check_groups(data: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for i, group in _dicts(data, "envVarGroups"):
        seen: set[str] = set()
        for j, item in _dicts(group, "envVars"):
            key = item.get("key")
            loc: Loc = ("envVarGroups", i, "envVars", j)
            if isinstance(key, str) and key in seen:
                problems.append(((*loc, "key"), f"duplicate key '{key}'"))
            seen.add(str(key))
            if ("value" in item) == ("generateValue" in item):
                problems.append((loc, "expected exactly one of value, generateValue"))
    return problems


def _check_names(data: dict[str, Any], positions: Mapping[Loc, tuple[int, int]]) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[tuple[str, str], Loc] = {}
    entries = [("services", i, e) for i, e in _dicts(data, "services")]
    entries += [("databases", i, e) for i, e in _dicts(data, "databases")]
    entries += [("envVarGroups", i, e) for i, e in _dicts(data, "envVarGroups")]
    for section, i, entry in entries:
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        loc: Loc = (section, i, "name")
        # Services and databases are separate namespaces on Render: render-examples/django,
        # hasura-graphql, posthog and redash each name a database like their web service.
        scope = section
        if (scope, name) in first:
            line, column = positions.get(first[(scope, name)], (0, 0))
            problems.append(
                (loc, f"duplicate name '{name}' (first defined at line {line}, column {column})")
            )
        else:
            first[(scope, name)] = loc
    return problems


def _check_service(svc: Mapping[str, Any], loc: Loc, kind: str) -> list[Problem]:
    problems: list[Problem] = []
    name = svc.get("name")
    label = f"service '{name}'" if isinstance(name, str) else f"service #{loc[-1]}"
    if "env" in svc and "runtime" in svc:
        problems.append(
            ((*loc, "env"), "'env' is the legacy name of 'runtime': give only 'runtime'")
        )
    runtime = svc.get("runtime", svc.get("env"))
    kind_of = svc.get("type")
    if isinstance(name, str) and kind_of not in _NOT_RUN and runtime not in _NOT_RUN_RUNTIMES:
        problem = service_name_problem(name)
        if problem:
            problems.append(((*loc, "name"), problem))
    if kind_of in _NEEDS_RUNTIME and runtime is None:
        problems.append(((*loc, "runtime"), f"missing required field ({label})"))
    if kind_of in _NEEDS_RUNTIME and runtime in NATIVE_RUNTIMES:
        problems += _check_start_command(svc.get("startCommand", _MISSING), loc, label, runtime)
    if kind_of == "web" and runtime != "static":
        problems += [
            ((*loc, f), "only for static sites (runtime: static)") for f in _STATIC_ONLY if f in svc
        ]
    if kind == "render":
        problems += [
            ((*loc, f), "is a Shipyard extension: move it to shipyard.yaml")
            for f in EXTENSIONS
            if f in svc
        ]
    if isinstance(svc.get("disk"), dict):
        problems += _check_disk(svc, loc, label)
    return problems


def _check_disk(svc: Mapping[str, Any], loc: Loc, label: str) -> list[Problem]:
    """A service with a disk runs one instance (Render's rule: one writer per disk)."""
    problems: list[Problem] = []
    count = svc.get("numInstances")
    if isinstance(count, int) and not isinstance(count, bool) and count > 1:
        problems.append(
            ((*loc, "numInstances"), f"{label} has a disk: it runs exactly one instance, not "
             f"{count} (a disk has one writer)")
        )  # fmt: skip
    if "scaling" in svc:
        problems.append(((*loc, "scaling"), f"{label} has a disk: it cannot scale"))
    if svc.get("type") == "cron":
        problems.append(((*loc, "disk"), "cron jobs cannot have a disk"))
    return problems


def _check_start_command(command: object, loc: Loc, label: str, runtime: str) -> list[Problem]:
    needs = f"{label} (runtime {runtime}) needs a startCommand"
    if command is _MISSING:
        return [((*loc, "startCommand"), f"missing required field: {needs}")]
    if command is None or (isinstance(command, str) and not command.strip()):
        return [((*loc, "startCommand"), f"empty: {needs}, the command that starts it")]
    return []


def _check_env_item(
    item: Mapping[str, Any],
    loc: Loc,
    services: Mapping[str, str],
    databases: list[str],
    groups: list[str],
) -> list[Problem]:
    forms = [f for f in _ENV_FORMS if f in item]
    if len(forms) != 1:
        what = f"has {' and '.join(forms)}" if forms else "has no value"
        return [(loc, f"{what}: expected exactly one of {', '.join(_ENV_FORMS)}")]
    form = forms[0]
    if form == "fromGroup":
        if "key" in item:
            return [((*loc, "key"), "fromGroup takes no key: it adds every variable of the group")]
        group = item["fromGroup"]
        if isinstance(group, str) and group not in groups and likely_typo(group, groups):
            return [((*loc, "fromGroup"), f"no envVarGroup '{group}'{did_you_mean(group, groups)}")]
        return []
    if "key" not in item:
        return [((*loc, "key"), "missing required field")]
    if form == "fromDatabase" and isinstance(item["fromDatabase"], dict):
        db = item["fromDatabase"].get("name")
        if db is not None and db not in databases and likely_typo(db, databases):
            return [
                ((*loc, "fromDatabase", "name"), f"no database '{db}'{did_you_mean(db, databases)}")
            ]
    if form == "fromService" and isinstance(item["fromService"], dict):
        return _check_from_service(item["fromService"], (*loc, "fromService"), services)
    return []


def _check_from_service(
    ref: Mapping[str, Any], loc: Loc, services: Mapping[str, str]
) -> list[Problem]:
    problems: list[Problem] = []
    name, wanted = ref.get("name"), "keyvalue" if ref.get("type") == "redis" else ref.get("type")
    if name is not None and name not in services:
        if likely_typo(name, list(services)):
            problems.append(
                ((*loc, "name"), f"no service '{name}'{did_you_mean(name, list(services))}")
            )
    elif name is not None and wanted is not None and services[name] != wanted:
        problems.append(((*loc, "type"), f"service '{name}' is a {services[name]}, not a {wanted}"))
    if ("property" in ref) == ("envVarKey" in ref):
        problems.append((loc, "expected exactly one of property, envVarKey"))
    if ref.get("property") == "connectionString" and wanted != "keyvalue":
        problems.append(((*loc, "property"), "connectionString is only for keyvalue services"))
    elif ref.get("property") in ("host", "port", "hostport") and "cron" in (
        wanted, services.get(str(name))
    ):  # fmt: skip
        problems.append(((*loc, "property"), f"cron job '{name}' has no {ref['property']}: it "
                         "runs on a schedule and listens on nothing (use envVarKey)"))  # fmt: skip
    return problems


# --- projects and environments ------------------------------------------------------------
#
# Render's `projects: [{name, environments: [{name, services, databases, envVarGroups}]}]`
# deploys each environment as its own copy: `api` of environment `staging` is `api-staging` in
# Shipyard (a DNS label: its host is api-staging.localhost), its database `db` is `db-staging`,
# its group `shared` is `shared-staging`. References inside an environment name the
# environment's own entries first, then the project's groups and the top level (unchanged).


def environment_slug(name: str) -> str:
    """The part of Shipyard's names an environment adds: 'Staging EU' -> 'staging-eu'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class Scope:
    """A part of the file holding resources: the top level, a project (its envVarGroups), or
    one environment of a project (whose names get ``-<slug>`` in Shipyard)."""

    loc: Loc  # () | ("projects", i) | ("projects", i, "environments", j)
    data: Mapping[str, Any]
    environment: str | None = None
    slug: str = ""
    project: str | None = None

    def internal(self, name: str) -> str:
        return f"{name}-{self.slug}" if self.slug else name

    def own(self) -> tuple[set[str], set[str], set[str]]:
        """The names this scope defines: services (any type), datastores (databases, read
        replicas, Key Value), env groups."""
        services = {str(s.get("name")) for _, s in _dicts(self.data, "services")}
        stores = {str(s.get("name")) for _, s in _dicts(self.data, "services")
                  if _type(s) == "keyvalue"}  # fmt: skip
        for _, db in _dicts(self.data, "databases"):
            stores |= {str(db.get("name"))} | {str(r.get("name")) for _, r in
                                                _dicts(db, "readReplicas")}  # fmt: skip
        groups = {str(g.get("name")) for _, g in _dicts(self.data, "envVarGroups")}
        return services, stores, groups


def scopes(data: Mapping[str, Any]) -> list[Scope]:
    """The top level, then each project and its environments, in file order."""
    out = [Scope((), data)]
    for i, project in _dicts(data, "projects"):
        name = project.get("name")
        project_name = name if isinstance(name, str) else None
        out.append(Scope(("projects", i), project, project=project_name))
        for j, env in _dicts(project, "environments"):
            env_name = env.get("name")
            if isinstance(env_name, str) and environment_slug(env_name):
                loc: Loc = ("projects", i, "environments", j)
                slug = environment_slug(env_name)
                out.append(Scope(loc, env, env_name, slug, project_name))
    return out


def check_projects(
    data: dict[str, Any], kind: str, positions: Mapping[Loc, tuple[int, int]]
) -> list[Problem]:
    """What ``check`` finds inside each project and environment (at their own file:line:col),
    and what only the whole file shows: an environment's service named in Shipyard like
    another service, datastore or group of the file, a domain two environments claim."""
    problems: list[Problem] = []
    for i, project in _dicts(data, "projects"):
        seen: dict[str, str] = {}
        for j, env in _dicts(project, "environments"):
            name = env.get("name")
            if not isinstance(name, str):
                continue
            loc: Loc = ("projects", i, "environments", j, "name")
            slug = environment_slug(name)
            if not slug:
                why = "Shipyard names its services <service>-<environment>"
                problems.append((loc, f"environment name {name!r} has no letter or digit: {why}"))
            elif slug in seen:
                other = f"environment '{seen[slug]}' of this project ({slug!r})"
                problems.append((loc, f"environment '{name}' would share the names of {other}"))
            else:
                seen[slug] = name
    every = scopes(data)
    for scope in every[1:]:
        depth = len(scope.loc)
        sub = {loc[depth:]: pos for loc, pos in positions.items() if loc[:depth] == scope.loc}
        found = (
            check(dict(scope.data), kind, sub)
            if scope.environment
            else _check_groups(dict(scope.data))
        )
        problems += [((*scope.loc, *loc), message) for loc, message in found]
    problems += _collisions(every)
    entries = [((*scope.loc, "services", i), svc) for scope in every
               for i, svc in _dicts(scope.data, "services")]  # fmt: skip
    problems += [p for p in _domain_problems(entries) if p[0][:1] == ("projects",)]
    return problems


def _named(scope: Scope) -> Iterator[tuple[str, str, Loc]]:
    """(namespace, Blueprint name, location of the name) of each entry of ``scope``."""
    for i, svc in _dicts(scope.data, "services"):
        if isinstance(svc.get("name"), str) and (runs(svc) or _type(svc) == "keyvalue"):
            space = "datastore" if _type(svc) == "keyvalue" else "service"
            yield space, svc["name"], (*scope.loc, "services", i, "name")
    for i, db in _dicts(scope.data, "databases"):
        if isinstance(db.get("name"), str):
            yield "datastore", db["name"], (*scope.loc, "databases", i, "name")
        for j, replica in _dicts(db, "readReplicas"):
            if isinstance(replica.get("name"), str):
                loc: Loc = (*scope.loc, "databases", i, "readReplicas", j, "name")
                yield "datastore", replica["name"], loc
    for i, group in _dicts(scope.data, "envVarGroups"):
        if isinstance(group.get("name"), str):
            yield "group", group["name"], (*scope.loc, "envVarGroups", i, "name")


_SPACES = {
    "service": "a service",
    "datastore": "a database, read replica or Key Value instance",
    "group": "an envVarGroup",
}


def _collisions(every: Sequence[Scope]) -> list[Problem]:
    """Two entries of different scopes with one name in Shipyard (duplicates within one scope
    are ``check``'s); an environment's name that is no longer a valid name once suffixed."""
    problems: list[Problem] = []
    first: dict[tuple[str, str], tuple[Loc, str, Scope]] = {}
    for scope in every:
        for space, name, loc in _named(scope):
            internal = scope.internal(name)
            if scope.slug and internal != name:
                invalid = _name_problem(space, internal) if not _name_problem(space, name) else None
                if invalid:
                    problems.append((loc, f"'{name}' of environment '{scope.environment}' is "
                                     f"'{internal}' in Shipyard: {invalid}"))  # fmt: skip
            key = (space, internal)
            if key not in first:
                first[key] = (loc, name, scope)
                continue
            other_loc, other_name, other = first[key]
            if other.loc == scope.loc:
                continue  # a duplicate name in one list: check() reports it
            problems.append((loc, f"{_describe(name, scope)} and {_describe(other_name, other)} "
                             f"({format_path(other_loc[:-1])}) would both be {_SPACES[space]} "
                             f"named '{internal}' in Shipyard: rename one"))  # fmt: skip
    return problems


def _name_problem(space: str, name: str) -> str | None:
    if space == "service":
        return service_name_problem(name)
    return datastore_name_problem(name) if space == "datastore" else None


def _describe(name: str, scope: Scope) -> str:
    if scope.environment is None:
        return f"'{name}'"
    return f"'{name}' of environment '{scope.environment}'"


# --- resolution -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class ResolvedEnv:
    values: dict[str, str]  # final env: group values first, the service's own entries override
    generated: dict[str, str]  # every generateValue key -> value, for the caller to persist
    unset: tuple[str, ...]  # "KEY: reason" for each key left unset


def generate_secret() -> str:
    """Render's generateValue: base64 of 256 random bits."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def resolve_env(
    spec: ServiceSpec,
    *,
    groups: Mapping[str, tuple[EnvVarSpec, ...]],
    endpoints: Mapping[str, Endpoint],
    service_env: Mapping[str, Mapping[str, str]],
    generated: Mapping[str, str],
    new_secret: Callable[[], str] = generate_secret,
    datastores: Mapping[str, Mapping[str, str]] | None = None,
) -> ResolvedEnv:
    """The environment of ``spec``; generateValue reuses ``generated`` so secrets stay stable.

    fromService host/port/hostport read ``endpoints[name]``; envVarKey reads
    ``service_env[name][key]``; fromDatabase, and fromService of a Key Value instance, read
    ``datastores[name][property]``. Group generateValue keys are stored as
    "group:<group>:<key>".
    """
    resolver = _Resolver(endpoints, service_env, generated, new_secret, datastores or {})
    for entry in spec.env_vars:
        if entry.from_group is not None:
            for item in groups.get(entry.from_group, ()):
                resolver.add(item, f"group:{entry.from_group}:{item.key}")
    for entry in spec.env_vars:
        if entry.from_group is None:
            resolver.add(entry, str(entry.key))
    unset = tuple(f"{k}: {why}" for k, why in resolver.unset.items() if k not in resolver.values)
    return ResolvedEnv(values=resolver.values, generated=resolver.generated, unset=unset)


@dataclass
class _Resolver:
    endpoints: Mapping[str, Endpoint]
    service_env: Mapping[str, Mapping[str, str]]
    previous: Mapping[str, str]
    new_secret: Callable[[], str]
    datastores: Mapping[str, Mapping[str, str]]
    values: dict[str, str] = field(default_factory=dict)
    generated: dict[str, str] = field(default_factory=dict)
    unset: dict[str, str] = field(default_factory=dict)

    def add(self, entry: EnvVarSpec, store: str) -> None:
        key = str(entry.key)
        value: str | None = None
        if entry.generate:
            value = self.previous.get(store) or self.new_secret()
            self.generated[store] = value
        elif entry.value is not None:
            value = entry.value
        elif not entry.sync:
            self.unset[key] = "sync: false, the operator supplies the value"
        elif entry.from_database is not None:
            name, prop = entry.from_database
            value = self._from_datastore(key, name, prop, "database")
        elif entry.from_service is not None and entry.from_service.type == "keyvalue":
            ref = entry.from_service
            if ref.env_var_key is not None:
                self.unset[key] = f"Key Value '{ref.name}' has no env vars (envVarKey)"
            else:
                value = self._from_datastore(key, ref.name, str(ref.property), "Key Value")
        elif entry.from_service is not None:
            value = self._from_service(key, entry.from_service)
        if value is not None:
            self.values[key] = value
            self.unset.pop(key, None)

    def _from_datastore(self, key: str, name: str, prop: str, what: str) -> str | None:
        properties = self.datastores.get(name)
        if properties is None:
            self.unset[key] = f"{what} '{name}' does not exist in Shipyard"
            return None
        value = properties.get(prop)
        if value is None:
            self.unset[key] = f"{what} '{name}' has no property '{prop}'"
        return value

    def _from_service(self, key: str, ref: FromService) -> str | None:
        if ref.env_var_key is not None:
            value = self.service_env.get(ref.name, {}).get(ref.env_var_key)
            if value is None:
                self.unset[key] = f"service '{ref.name}' has no env var '{ref.env_var_key}'"
            return value
        endpoint = self.endpoints.get(ref.name)
        if endpoint is None:
            self.unset[key] = f"service '{ref.name}' ({ref.type}) has no endpoint"
            return None
        if ref.property == "host":
            return endpoint.host
        if ref.property == "port":
            return str(endpoint.port)
        if ref.property == "hostport":
            return f"{endpoint.host}:{endpoint.port}"
        self.unset[key] = f"'{ref.property}' of service '{ref.name}' is not available"
        return None


def dependency_waves(services: Sequence[ServiceSpec]) -> list[list[str]]:
    """Services in deploy waves: each wave references (fromService) only services of earlier
    waves, so the services of one wave may deploy at the same time; file order within a wave.

    A cycle is not an error: when nothing is ready, the first remaining service (file order)
    goes alone, so a cycle keeps its file order.
    """
    names = [s.name for s in services]
    deps = {
        s.name: {e.from_service.name for e in s.env_vars if e.from_service} & set(names) - {s.name}
        for s in services
    }
    waves: list[list[str]] = []
    done: set[str] = set()
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if deps[n] <= done] or remaining[:1]
        waves.append(ready)
        done |= set(ready)
        remaining = [n for n in remaining if n not in done]
    return waves


def dependency_order(services: Sequence[ServiceSpec]) -> list[str]:
    """Names in deploy order: services others reference (fromService) first, else file order."""
    return [name for wave in dependency_waves(services) for name in wave]
