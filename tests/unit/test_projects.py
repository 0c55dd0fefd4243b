"""Render's projects and environments: a Blueprint's environments load as one flat Blueprint of
renamed services, datastores and groups (`api` of `staging` is `api-staging`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipyard.blueprint import LoadedBlueprint, parse_blueprint
from shipyard.blueprint.spec import ServiceSpec
from shipyard.context import Context
from shipyard.controlplane.promote import check_promotion, in_environment
from shipyard.errors import BlueprintError, Conflict, NotFound, UsageError
from shipyard.records import ServiceType
from shipyard.testing import make_context, seed_service


def load(text: str, kind: str = "render") -> LoadedBlueprint:
    return parse_blueprint(textwrap.dedent(text), filename="render.yaml", kind=kind)  # type: ignore[arg-type]


def problems(text: str) -> list[str]:
    with pytest.raises(BlueprintError) as info:
        load(text)
    return [
        f"{p['line']}:{p['column']}: {p['path']}: {p['message']}"
        for p in info.value.fields["problems"]
    ]


TWO_ENVIRONMENTS = """\
services:
  - type: web
    name: auth
    runtime: python
    startCommand: python auth.py
envVarGroups:
  - name: common
    envVars: [{key: REGION, value: here}]
projects:
  - name: shop
    environments:
      - name: staging
        services:
          - type: web
            name: api
            runtime: python
            startCommand: python app.py
            envVars:
              - {key: GREETING, value: hello from staging}
              - {key: DATABASE_URL, fromDatabase: {name: db, property: connectionString}}
              - {key: READ_URL, fromDatabase: {name: db-ro, property: connectionString}}
              - {key: JOBS_TOKEN, fromService: {type: worker, name: jobs, envVarKey: TOKEN}}
              - key: CACHE_URL
                fromService: {type: keyvalue, name: cache, property: connectionString}
              - {key: AUTH_HOST, fromService: {type: web, name: auth, property: host}}
              - fromGroup: settings
              - fromGroup: common
          - type: worker
            name: jobs
            runtime: python
            startCommand: python jobs.py
          - type: keyvalue
            name: cache
            ipAllowList: []
        databases:
          - name: db
            readReplicas: [{name: db-ro}]
        envVarGroups:
          - name: settings
            envVars: [{key: MODE, value: staging}]
      - name: Production
        services:
          - type: web
            name: api
            runtime: python
            startCommand: python app.py
            domains: [shop.example.com]
            envVars:
              - {key: GREETING, value: hello from production}
              - {key: DATABASE_URL, fromDatabase: {name: db, property: connectionString}}
        databases:
          - name: db
"""


def test_environments_flatten_into_renamed_services_datastores_and_groups() -> None:
    loaded = load(TWO_ENVIRONMENTS)
    assert [(s.name, s.environment, s.base_name) for s in loaded.services] == [
        ("auth", None, None),
        ("api-staging", "staging", "api"),
        ("jobs-staging", "staging", "jobs"),
        ("api-production", "Production", "api"),  # the environment's name keeps its case
    ]
    assert [(d.name, d.kind, d.primary) for d in loaded.datastores] == [
        ("db-staging", "postgres", None),
        ("db-ro-staging", "postgres", "db-staging"),
        ("db-production", "postgres", None),
        ("cache-staging", "keyvalue", None),
    ]
    primary = loaded.datastore("db-staging")
    assert primary is not None and primary.read_replicas == ("db-ro-staging",)
    # the database inside keeps the name Render derives from the Blueprint's name
    assert primary.database_name == "db" and primary.user == "db_user"
    assert sorted(loaded.groups) == ["common", "settings-staging"]
    assert loaded.service("api-production").domains == ("shop.example.com",)


def test_references_resolve_within_the_environment_first() -> None:
    loaded = load(TWO_ENVIRONMENTS)
    env = {e.key or f"group {e.from_group}": e for e in loaded.service("api-staging").env_vars}
    assert env["GREETING"].value == "hello from staging"
    assert env["DATABASE_URL"].from_database == ("db-staging", "connectionString")
    assert env["READ_URL"].from_database == ("db-ro-staging", "connectionString")
    jobs, cache, auth = env["JOBS_TOKEN"], env["CACHE_URL"], env["AUTH_HOST"]
    assert jobs.from_service is not None and jobs.from_service.name == "jobs-staging"
    assert cache.from_service is not None and cache.from_service.name == "cache-staging"
    # a name the environment does not define is the top level's, unchanged
    assert auth.from_service is not None and auth.from_service.name == "auth"
    assert env["group settings-staging"].from_group == "settings-staging"
    assert env["group common"].from_group == "common"
    production = {e.key: e for e in loaded.service("api-production").env_vars}
    assert production["GREETING"].value == "hello from production"
    assert production["DATABASE_URL"].from_database == ("db-production", "connectionString")


def test_an_environment_service_named_like_a_top_level_one_is_refused_naming_both() -> None:
    found = problems(
        """\
        services:
          - type: web
            name: api-staging
            runtime: python
            startCommand: python app.py
        databases:
          - name: db-staging
        projects:
          - name: p
            environments:
              - name: staging
                services:
                  - type: web
                    name: api
                    runtime: python
                    startCommand: python app.py
                databases:
                  - name: db
        """
    )
    assert found == [
        "14:13: projects[0].environments[0].services[0].name: 'api' of environment 'staging' "
        "and 'api-staging' (services[0]) would both be a service named 'api-staging' in "
        "Shipyard: rename one",
        "18:13: projects[0].environments[0].databases[0].name: 'db' of environment 'staging' "
        "and 'db-staging' (databases[0]) would both be a database, read replica or Key Value "
        "instance named 'db-staging' in Shipyard: rename one",
    ]


def test_two_projects_with_one_environment_name_collide_and_so_do_their_domains() -> None:
    environment = """\
              - name: staging
                services:
                  - type: web
                    name: api
                    runtime: python
                    startCommand: python app.py
                    domains: [staging.example.com]
                envVarGroups:
                  - name: settings
                    envVars: [{key: MODE, value: staging}]
"""
    found = problems(
        f"""\
        projects:
          - name: a
            environments:
{environment}
          - name: b
            environments:
{environment}
        """
    )
    assert found == [
        "20:13: projects[1].environments[0].services[0].name: 'api' of environment 'staging' "
        "and 'api' of environment 'staging' (projects[0].environments[0].services[0]) would "
        "both be a service named 'api-staging' in Shipyard: rename one",
        "23:23: projects[1].environments[0].services[0].domains[0]: domain "
        "'staging.example.com' is also a domain of service 'api' "
        "(projects[0].environments[0].services[0]): a domain routes to one service",
        "25:13: projects[1].environments[0].envVarGroups[0].name: 'settings' of environment "
        "'staging' and 'settings' of environment 'staging' "
        "(projects[0].environments[0].envVarGroups[0]) would both be an envVarGroup named "
        "'settings-staging' in Shipyard: rename one",
    ]


def test_errors_inside_environments_name_their_file_line_and_column() -> None:
    found = problems(
        """\
        projects:
          - name: p
            environments:
              - name: staging
                services: []
              - name: production
                services:
                  - type: web
                    name: web
                    runtime: python
                    startCommand: python app.py
                  - type: worker
                    name: worker
                    runtime: python
                    startCommand: python w.py
                  - type: web
                    name: Api
                    runtime: python
                    startComand: python app.py
                    envVars:
                      - {key: A, value: x}
                      - {key: A, fromGroup: g}
                envVarGroups:
                  - name: g
                    envVars: [{key: K}]
        """
    )
    where = "projects[0].environments[1]"
    assert found == [
        f"16:13: {where}.services[2].startCommand: missing required field: service 'Api' "
        "(runtime python) needs a startCommand",
        f"17:13: {where}.services[2].name: invalid service name 'Api' (uppercase letters are "
        "not allowed): use 1-63 lowercase letters, digits or '-', not starting or ending with "
        "'-'. Did you mean 'api'?",
        f"19:13: {where}.services[2].startComand: unknown field. Did you mean 'startCommand'?",
        f"22:18: {where}.services[2].envVars[1].key: fromGroup takes no key: it adds every "
        "variable of the group",
        f"22:18: {where}.services[2].envVars[1].key: duplicate key 'A' (also envVars[0])",
        f"25:23: {where}.envVarGroups[0].envVars[0]: expected exactly one of value, generateValue",
    ]


def test_environment_names_must_give_distinct_labels_and_long_names_are_refused() -> None:
    long_name = "s" * 55
    found = problems(
        f"""\
        projects:
          - name: p
            environments:
              - name: staging
              - name: Staging
              - name: "~~~"
              - name: production
                services:
                  - type: worker
                    name: {long_name}
                    runtime: python
                    startCommand: python w.py
        """
    )
    assert found[:2] == [
        "5:9: projects[0].environments[1].name: environment 'Staging' would share the names "
        "of environment 'staging' of this project ('staging')",
        "6:9: projects[0].environments[2].name: environment name '~~~' has no letter or digit: "
        "Shipyard names its services <service>-<environment>",
    ]
    assert found[2].startswith(
        f"10:13: projects[0].environments[3].services[0].name: '{long_name}' of environment "
        f"'production' is '{long_name}-production' in Shipyard: invalid service name"
    )
    assert len(found) == 3


def test_notices_inside_an_environment_are_placed_and_settings_explained() -> None:
    loaded = load(
        """\
        projects:
          - name: p
            environments:
              - name: production
                networking: {isolation: enabled}
                permissions: {protection: disabled}
                services:
                  - type: web
                    name: site
                    runtime: static
                    staticPublishPath: dist
                  - type: web
                    name: api
                    runtime: python
                    startCommand: python app.py
                    plan: starter
                    envVars:
                      - {key: MISSING, fromService: {type: pserv, name: elsewhere, property: host}}
        """
    )
    by_path = {n.path: n for n in loaded.notices}
    assert set(by_path) == {
        "projects[0].environments[0].networking",
        "projects[0].environments[0].services[0]",
        "projects[0].environments[0].services[1].plan",
        "projects[0].environments[0].services[1].envVars[0]",
    }
    assert by_path["projects[0].environments[0].networking"].location == "render.yaml:5:9"
    assert "network isolation" in by_path["projects[0].environments[0].networking"].message
    assert by_path["projects[0].environments[0].services[0]"].location == "render.yaml:8:13"
    assert [s.name for s in loaded.services] == ["api-production"]


# --- promote: what is refused before anything is recorded -----------------------------------


def _seed_pair(tmp_path: Path, *, staging_type: ServiceType = "web") -> Context:
    ctx = make_context(tmp_path)
    for env, kind in (("staging", staging_type), ("production", "web")):
        name = f"api-{env}"
        seed_service(ctx, name, kind, environment=env, base_name="api",
                     internal_port=20000 if env == "staging" else 20001)  # fmt: skip
        (ctx.settings.services_dir / name / "app").mkdir(parents=True)
    return ctx


def test_promotion_finds_both_environments_by_name_or_label(tmp_path: Path) -> None:
    ctx = _seed_pair(tmp_path)
    found = check_promotion(ctx.state, "api", "staging", "production")
    assert (found.source.name, found.target.name, found.release.number) == (
        "api-staging", "api-production", 1,
    )  # fmt: skip
    assert in_environment(ctx.state, "api", "production").name == "api-production"


def test_promotion_refusals_name_what_is_known(tmp_path: Path) -> None:
    ctx = _seed_pair(tmp_path)
    state = ctx.state
    with pytest.raises(NotFound, match="no environment 'qa'; it is in: production, staging"):
        check_promotion(state, "api", "qa", "production")
    with pytest.raises(NotFound, match="No service 'web' in any environment; services in "
                       "environments: api"):  # fmt: skip
        check_promotion(state, "web", "staging", "production")
    with pytest.raises(UsageError, match="both name api-staging"):
        check_promotion(state, "api", "staging", "staging")


def test_promotion_needs_a_live_source_and_the_same_runtime(tmp_path: Path) -> None:
    ctx = _seed_pair(tmp_path, staging_type="worker")
    state = ctx.state
    with pytest.raises(Conflict, match="type worker in staging but web in production"):
        check_promotion(state, "api", "staging", "production")
    state.register_service("api-qa", "web", ServiceSpec(
        name="api-qa", type="web", runtime="python", environment="qa", base_name="api"),
        "bp", 1, None)  # fmt: skip
    with pytest.raises(Conflict, match="api-qa has no live release to promote"):
        check_promotion(state, "api", "qa", "production")
    with pytest.raises(Conflict, match="api-qa has no live release yet"):
        check_promotion(state, "api", "production", "qa")
