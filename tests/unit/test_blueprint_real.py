"""Real render.yaml files from public repositories (tests/unit/blueprints/real/) must load.

Each file is kept byte-for-byte as published, after a first comment line naming its source.
Shipyard promises to read Render Blueprints unchanged, so a file Render accepts that fails
here is a loader bug; files Render itself rejects are listed in KNOWN_REJECTED.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipyard.blueprint import LoadedBlueprint, load_blueprint, parse_blueprint
from shipyard.errors import BlueprintError

REAL = Path(__file__).parent / "blueprints" / "real"
FILES = sorted(REAL.glob("*.yaml"))

# file -> the problem it must be rejected with (Render rejects it too).
KNOWN_REJECTED = {
    # Two `healthCheckPath` keys in one service. Render decodes with Go's yaml.v3, which
    # rejects a mapping key defined twice ("mapping key ... already defined"), and a
    # duplicate key is almost always an editing mistake: keep it an error.
    "render-examples__minio.yaml": (
        "render-examples__minio.yaml:12:3: services[0].healthCheckPath: duplicate key "
        "'healthCheckPath' (first defined at line 5, column 3)"
    ),
}
ACCEPTED = [f for f in FILES if f.name not in KNOWN_REJECTED]


def load(name: str) -> LoadedBlueprint:
    return load_blueprint_named(REAL / name)


def load_blueprint_named(path: Path) -> LoadedBlueprint:
    return parse_blueprint(path.read_text(encoding="utf-8"), filename=path.name, kind="render")


def messages(loaded: LoadedBlueprint) -> dict[str, str]:
    return {n.path: n.message for n in loaded.notices}


def test_the_collection_is_large_and_sourced() -> None:
    assert len(FILES) >= 25
    for path in FILES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Source: "), path.name


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.name)
def test_real_file_loads(path: Path) -> None:
    loaded = load_blueprint_named(path)
    assert all(n.location.startswith(f"{path.name}:") for n in loaded.notices)


@pytest.mark.parametrize("name", sorted(KNOWN_REJECTED))
def test_known_rejected_file(name: str) -> None:
    with pytest.raises(BlueprintError) as info:
        load(name)
    assert info.value.message.splitlines()[1:] == [KNOWN_REJECTED[name]]


def test_load_blueprint_reads_a_real_file_from_disk(tmp_path: Path) -> None:
    target = tmp_path / "render.yaml"
    target.write_bytes((REAL / "render-examples__django.yaml").read_bytes())
    loaded = load_blueprint(target)
    assert [s.name for s in loaded.services] == ["mysite"]


# --- what specific files turn into ----------------------------------------------------------


def test_django_service_and_database_share_a_name() -> None:
    loaded = load("render-examples__django.yaml")
    (web,) = loaded.services
    assert (web.name, web.type, web.runtime) == ("mysite", "web", "python")
    assert web.start_command == "gunicorn mysite.wsgi:application"
    env = {e.key: e for e in web.env_vars}
    assert env["WEB_CONCURRENCY"].value == "4"
    assert env["SECRET_KEY"].generate
    assert env["DATABASE_URL"].from_database == ("mysite", "connectionString")
    notes = messages(loaded)
    assert "reachable from this machine only" in notes["databases[0]"]
    (db,) = loaded.datastores
    assert (db.name, db.kind, db.database_name, db.user) == (
        "mysite",
        "postgres",
        "mysite",
        "mysite",
    )
    assert "services[0].autoDeploy" not in notes  # understood: when a commit deploys it


def test_celery_runs_python_services_and_skips_the_redis_alias() -> None:
    loaded = load("render-examples__celery.yaml")
    assert [s.name for s in loaded.services] == ["queue", "app", "flower"]
    assert "deprecated name of 'keyvalue'" in messages(loaded)["services[3].type"]
    assert [(d.name, d.kind) for d in loaded.datastores] == [("celery-redis", "keyvalue")]
    ref = loaded.service("queue").env_vars[0].from_service
    assert ref is not None
    assert (ref.type, ref.name, ref.property) == ("keyvalue", "celery-redis", "connectionString")


def test_temporal_dotted_env_keys_and_docker_services() -> None:
    loaded = load("render-examples__temporal.yaml")
    assert [s.name for s in loaded.services] == ["app-workflow-trigger", "app-worker"]
    notes = messages(loaded)
    assert "docker service 'temporal-elasticsearch'" in notes["services[0]"]
    assert loaded.groups["temporal-shared"][1].value == "true"


def test_previews_generation_off_unquoted_is_the_string_off() -> None:
    loaded = load("render-examples__sim-on-render.yaml")
    assert loaded.services == ()
    notes = messages(loaded)  # its services are in an environment: read, then skipped
    assert "docker service 'simstudio'" in notes["projects[0].environments[0].services[0]"]


def test_tooljet_uppercase_names_of_docker_services() -> None:
    loaded = load("ToolJet__ToolJet.yaml")
    assert loaded.services == ()
    notes = messages(loaded)
    assert notes["services[0]"].startswith("not supported yet: docker service 'ToolJet'")
    assert notes["services[1]"].startswith("not supported yet: docker service 'PostgREST'")


def test_reference_to_a_database_outside_the_file_is_a_notice() -> None:
    loaded = load("render-examples__postgres-s3-backups.yaml")
    assert "docker service 'backup-db'" in messages(loaded)["services[0]"]  # a Docker cron job
    # cron jobs are skipped whole; the same reference from a running service is a notice
    text = textwrap.dedent(
        """\
        services:
          - type: worker
            name: backup
            runtime: python
            startCommand: python backup.py
            envVars:
              - key: DATABASE_URL
                fromDatabase: {name: clarity-db, property: connectionString}
        """
    )
    loaded = parse_blueprint(text, filename="render.yaml", kind="render")
    assert messages(loaded)["services[0].envVars[0]"] == (
        "DATABASE_URL: database 'clarity-db' is not defined in this file: it must exist in "
        "Shipyard (from another Blueprint, or `shipyard db restore --as`)"
    )


def test_preview_value_and_database_previews() -> None:
    loaded = load("render-examples__preview-environment.yaml")
    backend = loaded.service("express-backend")
    assert backend.env_vars[0].value == "production-api-key"
    assert "static site 'render-todo'" in messages(loaded)["services[1]"]


def test_render_spec_example_loads_with_notices() -> None:
    loaded = load("render-docs__blueprint-spec-example.yaml")
    assert [s.name for s in loaded.services] == ["sinatra-app", "date"]  # date: a cron job
    sinatra = loaded.service("sinatra-app")
    assert sinatra.num_instances == 3
    assert sinatra.max_shutdown_delay_seconds == 120
    assert sinatra.domains == ("example.com", "www.example.org")
    notes = messages(loaded)
    assert "database 'mydatabase' is not defined in this file" in notes["services[0].envVars[3]"]
    assert notes["services[0].envVars[5]"] == (
        "envVarGroup 'my-env-group' is not defined in this file (on Render it must exist in "
        "the workspace): its variables are not added"
    )
    assert notes["services[1]"].startswith("not supported yet: docker service 'webdis'")


# --- strictness kept while widening ---------------------------------------------------------


def problems(text: str) -> list[str]:
    with pytest.raises(BlueprintError) as info:
        parse_blueprint(textwrap.dedent(text), filename="render.yaml", kind="render")
    return info.value.message.splitlines()[1:]


def test_close_misspelling_of_a_defined_name_is_still_an_error() -> None:
    assert problems(
        """\
        services:
          - type: worker
            name: w
            runtime: go
            startCommand: w
            envVars:
              - {key: A, fromDatabase: {name: clarity-bd, property: host}}
              - {key: B, fromService: {type: pserv, name: searhc, property: host}}
              - fromGroup: sharde
          - {type: pserv, name: search, runtime: docker}
        databases: [{name: clarity-db}]
        envVarGroups: [{name: shared, envVars: [{key: X, value: y}]}]
        """
    ) == [
        "render.yaml:7:33: services[0].envVars[0].fromDatabase.name: no database 'clarity-bd'. "
        "Did you mean 'clarity-db'?",
        "render.yaml:8:45: services[0].envVars[1].fromService.name: no service 'searhc'. "
        "Did you mean 'search'?",
        "render.yaml:9:9: services[0].envVars[2].fromGroup: no envVarGroup 'sharde'. "
        "Did you mean 'shared'?",
    ]


def test_service_names_are_free_form_only_for_services_shipyard_does_not_run() -> None:
    found = problems(
        """\
        services:
          - {type: worker, name: My Worker, runtime: python, startCommand: a}
          - {type: web, name: My Site, runtime: static, staticPublishPath: dist}
          - {type: keyvalue, name: private cache, ipAllowList: []}
        """
    )
    assert found == [
        "render.yaml:2:20: services[0].name: invalid service name 'My Worker' (uppercase "
        "letters are not allowed): use 1-63 lowercase letters, digits or '-', not starting or "
        "ending with '-'. Did you mean 'my-worker'?"
    ]
    assert problems("services:\n  - {type: keyvalue, name: '', ipAllowList: []}\n") == [
        "render.yaml:2:22: services[0].name: String should have at least 1 character "
        "(got the string '')"
    ]


def test_yaml_1_1_booleans_follow_the_field_type() -> None:
    text = textwrap.dedent(
        """\
        previews: {generation: off}
        services:
          - type: web
            name: api
            runtime: node
            startCommand: node a.js
            autoDeploy: no
            autoDeployTrigger: off
            envVars:
              - {key: FEATURE, value: off}
              - {key: ON_CALL, value: yes}
              - {key: TOKEN, sync: no}
        """
    )
    loaded = parse_blueprint(text, filename="render.yaml", kind="render")
    env = {e.key: e for e in loaded.service("api").env_vars}
    assert env["FEATURE"].value == "off"
    assert env["ON_CALL"].value == "yes"
    assert not env["TOKEN"].sync
    assert "sync: false" in messages(loaded)["services[0].envVars[2]"]
    assert problems(
        """\
        previews: {generation: of}
        services:
          - {type: web, name: api, runtime: node, startCommand: a, autoDeploy: 'no'}
        """
    ) == [
        "render.yaml:1:12: previews.generation: expected one of automatic, manual, off; got "
        "the string 'of'. Did you mean 'off'?",
        "render.yaml:3:60: services[0].autoDeploy: expected a boolean (true or false), got the "
        "string 'no'",
    ]


def test_new_nested_fields_stay_strict() -> None:
    assert problems(
        """\
        services:
          - type: web
            name: img
            runtime: image
            image: {url: x, creds: {fromRegistryCred: {name: c}}}
            registryCredential: {fromRegistryCreds: {name: c, id: 3}}
          - {type: keyvalue, name: kv, ipAllowList: [], persistenceMode: 3}
        envVarGroups:
          - {name: g, envVars: {key: A, value: b}}
        """
    ) == [
        "render.yaml:5:21: services[0].image.creds.fromRegistryCreds: missing required field",
        "render.yaml:5:29: services[0].image.creds.fromRegistryCred: unknown field. "
        "Did you mean 'fromRegistryCreds'?",
        "render.yaml:6:55: services[0].registryCredential.fromRegistryCreds.id: unknown field; "
        "expected one of name",
        "render.yaml:7:49: services[1].persistenceMode: expected a string, got the number 3",
        "render.yaml:9:15: envVarGroups[0].envVars: expected a list, got a mapping",
    ]
