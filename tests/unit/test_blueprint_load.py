"""Loading Blueprints: specs, notices, legacy spellings, extensions and every error class."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import shipyard.blueprint as bp
from shipyard.blueprint import (
    EnvVarSpec,
    FromService,
    ServiceSpec,
    blueprint_json_schema,
    find_blueprint,
    load_blueprint,
    parse_blueprint,
)
from shipyard.errors import BlueprintError

FIXTURES = Path(__file__).parent / "blueprints"


def problems(text: str, kind: str = "render") -> list[dict[str, Any]]:
    """Parse ``text`` expecting failure; return the problems."""
    with pytest.raises(BlueprintError) as info:
        parse_blueprint(textwrap.dedent(text), filename=f"{kind}.yaml", kind=kind)  # type: ignore[arg-type]
    assert info.value.code == "blueprint_invalid"
    found: list[dict[str, Any]] = info.value.fields["problems"]
    return found


def where(problem: dict[str, Any]) -> str:
    return f"{problem['file']}:{problem['line']}:{problem['column']}: {problem['path']}"


def parse(text: str, kind: str = "render") -> bp.LoadedBlueprint:
    return parse_blueprint(textwrap.dedent(text), filename=f"{kind}.yaml", kind=kind)  # type: ignore[arg-type]


def test_public_api() -> None:
    assert set(bp.__all__) == {
        "BlueprintLimits", "Endpoint", "EnvVarSpec", "FromService", "LoadedBlueprint", "Notice",
        "ResolvedEnv",
        "ServiceSpec", "blueprint_json_schema", "dependency_order", "dependency_waves",
        "find_blueprint", "generate_secret", "load_blueprint", "parse_blueprint", "resolve_env",
    }  # fmt: skip


# --- a realistic render.yaml ----------------------------------------------------------------


def test_realistic_render_yaml_loads_supported_services() -> None:
    loaded = load_blueprint(FIXTURES / "render.yaml")
    assert loaded.kind == "render"
    assert loaded.root == FIXTURES
    assert [s.name for s in loaded.services] == ["api", "search", "jobs", "nightly"]
    api = loaded.service("api")
    assert api.type == "web" and api.runtime == "node"
    assert api.root_dir == "backend"
    assert api.build_command == "npm ci && npm run build"
    assert api.start_command == "node dist/server.js"
    assert api.pre_deploy_command == "npm run migrate"
    assert api.health_check_path == "/healthz"
    assert (api.num_instances, api.max_shutdown_delay_seconds) == (2, 60)
    assert api.domains == ("api.example.com",)
    env = {e.key: e for e in api.env_vars}
    assert env["PORT"] == EnvVarSpec(key="PORT", value="3000")
    assert env["DEBUG"].value == "false"
    assert env["SESSION_SECRET"].generate
    assert env["STRIPE_KEY"].sync is False
    assert env["DATABASE_URL"].from_database == ("app-db", "connectionString")
    assert env["SEARCH_HOSTPORT"].from_service == FromService("pserv", "search", "hostport", None)
    assert env[None] == EnvVarSpec(key=None, from_group="shared")
    search = loaded.service("search")
    assert (search.type, search.runtime, search.start_command) == (
        "pserv", "python", "python -m search",
    )  # fmt: skip
    jobs = loaded.service("jobs")
    assert jobs.env_vars[0].from_service == FromService("web", "api", None, "SESSION_SECRET")
    assert loaded.groups["shared"] == (
        EnvVarSpec(key="LOG_LEVEL", value="info"),
        EnvVarSpec(key="SHARED_SECRET", generate=True),
    )


def test_realistic_render_yaml_reports_each_unsupported_part() -> None:
    loaded = load_blueprint(FIXTURES / "render.yaml")
    by_path = {n.path: n for n in loaded.notices}
    assert by_path["services[0].scaling"].message == (
        "not supported yet: autoscaling (scaling) is ignored in this version"
    )
    assert by_path["services[0].scaling"].location == "render.yaml:20:5"
    assert "no instance plans" in by_path["services[0].plan"].message
    assert "no regions" in by_path["services[0].region"].message
    # repo/branch/autoDeploy say when a commit deploys the service: used, no notice
    assert "services[0].repo" not in by_path and "services[0].branch" not in by_path
    assert loaded.service("api").repo.startswith("https://")
    assert by_path["services[0].envVars[3]"].message.startswith("STRIPE_KEY is left unset (sync")
    # databases and Key Value are run: their references resolve, nothing is left unset
    assert "services[0].envVars[4]" not in by_path
    assert "services[0].envVars[6]" not in by_path
    assert "services[1].disk" not in by_path
    disk = loaded.service("search").disk
    assert disk is not None and (disk.name, disk.mount_path, disk.size_gb) == (
        "index", "/var/data", 5
    )  # fmt: skip
    assert "services[2].autoDeploy" not in by_path
    assert "services[3]" not in by_path  # cron jobs run (run/cron.py)
    assert loaded.service("nightly").schedule == "0 3 * * *"
    assert "static site 'frontend'" in by_path["services[4]"].message
    assert "services[5]" not in by_path
    assert "reachable from this machine only" in by_path["databases[0]"].message
    assert [(d.name, d.kind) for d in loaded.datastores] == [
        ("app-db", "postgres"),
        ("cache", "keyvalue"),
    ]
    db = loaded.datastores[0]
    assert (db.database_name, db.user, db.backups.retention_days) == ("app", "app", 30)
    assert "preview environments" in by_path["previewsEnabled"].message
    assert by_path["previewsEnabled"].location == "render.yaml:2:1"
    lines = [int(n.location.split(":")[1]) for n in loaded.notices]
    assert lines == sorted(lines)


def test_service_lookup_error_suggests_a_name() -> None:
    loaded = load_blueprint(FIXTURES / "render.yaml")
    with pytest.raises(BlueprintError, match=r"no service 'apii'\. Did you mean 'api'\?"):
        loaded.service("apii")


def test_find_blueprint_prefers_shipyard_yaml(tmp_path: Path) -> None:
    with pytest.raises(BlueprintError, match=str(tmp_path)):
        find_blueprint(tmp_path)
    (tmp_path / "render.yml").write_text("services: []\n")
    assert find_blueprint(tmp_path) == tmp_path / "render.yml"
    (tmp_path / "shipyard.yaml").write_text("services: []\n")
    assert find_blueprint(tmp_path) == tmp_path / "shipyard.yaml"
    assert load_blueprint(tmp_path / "shipyard.yaml").kind == "shipyard"


# --- REFERENCE examples and legacy spellings ------------------------------------------------


def test_legacy_spellings() -> None:
    loaded = load_blueprint(FIXTURES / "legacy.yaml")
    site = loaded.service("site")
    assert site.runtime == "node"
    assert site.domains == ("www.example.com", "example.com")
    messages = {n.path: n.message for n in loaded.notices}
    assert "services[0].autoDeploy" not in messages  # legacy autoDeploy is understood
    assert site.auto_deploy is True
    assert "deprecated name of 'keyvalue'" in messages["services[1].type"]
    assert "previewsExpireAfterDays" in messages


def test_env_and_runtime_together_is_an_error() -> None:
    found = problems(
        """\
        services:
          - type: worker
            name: w
            env: python
            runtime: python
            startCommand: python w.py
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        (
            "render.yaml:4:5: services[0].env",
            "'env' is the legacy name of 'runtime': give only 'runtime'",
        )
    ]


def test_reference_shapes_all_validate() -> None:
    loaded = parse(
        """\
        version: "1"
        previews: {generation: manual, expireAfterDays: 3}
        services:
          - type: web
            name: docs
            runtime: static
            staticPublishPath: public
            headers: [{path: /*, name: X-Frame-Options, value: DENY}]
            routes: [{type: redirect, source: /old, destination: /new}]
          - type: web
            name: img
            runtime: image
            image: {url: docker.io/library/nginx:1.27}
          - type: cron
            name: tick
            runtime: go
            schedule: "*/5 * * * *"
            startCommand: ./tick
          - type: keyvalue
            name: kv
            ipAllowList: [{source: 10.0.0.0/8, description: office}]
        databases:
          - name: db
            highAvailability: {enabled: true}
            readReplicas: [{name: db-replica}]
        projects:
          - name: p
            environments:
              - name: production
                networking: {isolation: enabled}
                permissions: {protection: enabled}
        """
    )
    assert [s.name for s in loaded.services] == ["tick"]  # the cron job
    paths = [n.path for n in loaded.notices]
    assert paths == [
        "previews", "services[0]", "services[1]", "services[3].ipAllowList",
        "databases[0]", "databases[0].highAvailability",
        "projects[0].environments[0].networking", "projects[0].environments[0].permissions",
    ]  # fmt: skip
    assert "image service 'img'" in loaded.notices[2].message


def test_strict_nested_fields() -> None:
    found = problems(
        """\
        services:
          - type: cron
            name: tick
            runtime: go
            startCommand: ./tick
          - type: keyvalue
            name: kv
            maxmemoryPolicy: allkeys-lr
          - type: web
            name: api
            runtime: node
            startCommand: x
            scaling: {minInstances: 1, maxInstances: 2, targetCPUPercent: 95}
            autoDeployTrigger: comit
            staticPublishPath: dist
        """
    )
    got = {p["path"]: (f"{p['line']}:{p['column']}", p["message"]) for p in found}
    assert got["services[0].schedule"] == ("2:5", "missing required field")
    assert got["services[1].ipAllowList"] == ("6:5", "missing required field")
    assert got["services[1].maxmemoryPolicy"][1].endswith("Did you mean 'allkeys-lru'?")
    assert got["services[2].scaling.targetCPUPercent"] == (
        "13:49", "expected a value less than or equal to 90, got 95",
    )  # fmt: skip
    assert got["services[2].autoDeployTrigger"] == (
        "14:5",
        "expected one of off, commit, checksPass; got the string 'comit'. Did you mean 'commit'?",
    )
    assert got["services[2].staticPublishPath"][1] == "only for static sites (runtime: static)"


# --- shipyard.yaml extensions ---------------------------------------------------------------


def test_extensions_accepted_in_shipyard_yaml() -> None:
    loaded = load_blueprint(FIXTURES / "shipyard.yaml")
    app = loaded.service("app")
    assert loaded.kind == "shipyard"
    assert (app.health_check_timeout_seconds, app.drain_timeout_seconds) == (90, 0)
    assert loaded.notices == ()


def test_extensions_rejected_in_render_yaml() -> None:
    text = (FIXTURES / "shipyard.yaml").read_text()
    found = problems(text, kind="render")
    assert [(where(p), p["message"]) for p in found] == [
        (
            "render.yaml:7:5: services[0].healthCheckTimeoutSeconds",
            "is a Shipyard extension: move it to shipyard.yaml",
        ),
        (
            "render.yaml:8:5: services[0].drainTimeoutSeconds",
            "is a Shipyard extension: move it to shipyard.yaml",
        ),
    ]


def test_extension_ranges() -> None:
    found = problems(
        """\
        services:
          - {type: web, name: a, runtime: go, startCommand: a, healthCheckTimeoutSeconds: 0}
        """,
        kind="shipyard",
    )
    assert found[0]["path"] == "services[0].healthCheckTimeoutSeconds"
    assert found[0]["message"] == "expected a value greater than or equal to 1, got 0"


# --- errors ---------------------------------------------------------------------------------


def test_all_problems_are_collected_with_positions() -> None:
    with pytest.raises(BlueprintError) as info:
        load_blueprint(FIXTURES / "errors.yaml")
    assert info.value.message.splitlines() == [
        "errors.yaml: 11 problems:",
        "errors.yaml:3:5: services[0].name: invalid service name 'My_API' (uppercase letters "
        "are not allowed): use 1-63 lowercase letters, digits or '-', not starting or ending "
        "with '-'. Did you mean 'my-api'?",
        "errors.yaml:4:5: services[0].runtime: expected one of docker, elixir, go, image, node, "
        "python, ruby, rust, static; got the string 'nod'. Did you mean 'node'?",
        "errors.yaml:5:5: services[0].startComand: unknown field. Did you mean 'startCommand'?",
        "errors.yaml:6:5: services[0].numInstances: expected a value greater than or equal to "
        "1, got 0",
        "errors.yaml:10:9: services[0].envVars[1].key: duplicate key 'A' (also envVars[0])",
        "errors.yaml:13:11: services[0].envVars[1].fromService.name: no service 'serch'. "
        "Did you mean 'search'?",
        "errors.yaml:15:9: services[0].envVars[2].fromGroup: no envVarGroup 'sharde'. "
        "Did you mean 'shared'?",
        "errors.yaml:16:5: services[1].startCommand: missing required field: service 'search' "
        "(runtime go) needs a startCommand",
        "errors.yaml:19:5: services[2].type: unknown type 'wbe': expected one of web, pserv, "
        "worker, cron, keyvalue, redis. Did you mean 'web'?",
        "errors.yaml:23:5: databases[1].name: duplicate name 'search' (first defined at line "
        "22, column 5)",
        "errors.yaml:29:1: projets: unknown field. Did you mean 'projects'?",
    ]
    first = info.value.fields["problems"][0]
    assert {k: first[k] for k in ("file", "line", "column", "path")} == {
        "file": "errors.yaml",
        "line": 3,
        "column": 5,
        "path": "services[0].name",
    }
    assert info.value.to_dict()["code"] == "blueprint_invalid"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services: [a: b\n", ("render.yaml:2:1: ", "YAML syntax error: while parsing a flow")),
        (
            "services: []\nversion: '1'\nservices: []\n",
            (
                "render.yaml:3:1: services",
                "duplicate key 'services' (first defined at line 1, column 1)",
            ),
        ),
        (
            "previewz: {}\n",
            ("render.yaml:1:1: previewz", "unknown field. Did you mean 'previews'?"),
        ),
        (
            "services: []\nfoo: 1\n",
            (
                "render.yaml:2:1: foo",
                "unknown field; expected one of databases, envVarGroups, previews",
            ),
        ),
        (
            "services: []\nversion: 2\n",
            ("render.yaml:2:1: version", "expected '1', got the string '2'"),
        ),
        (
            "services: []\nversion: !!int abc\n",
            ("render.yaml:2:10: version", "cannot read this value as !!int"),
        ),
        ("services: {}\n", ("render.yaml:1:1: services", "expected a list, got a mapping")),
    ],
)
def test_file_level_errors(text: str, expected: tuple[str, str]) -> None:
    [found] = problems(text)
    assert where(found).startswith(expected[0])
    assert found["message"].startswith(expected[1])


SERVICE = """\
services:
  - type: web
    name: api
    runtime: node
    startCommand: node server.js
"""


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        (
            "startComand: x",
            "startComand",
            "unknown field. Did you mean 'startCommand'?",
        ),
        (
            "healthCheckPath: healthz",
            "healthCheckPath",
            "'healthz' must start with '/'",
        ),
        (
            "rootDir: /srv/app",
            "rootDir",
            "'/srv/app' is absolute: rootDir is relative",
        ),
        (
            "rootDir: a/../../b",
            "rootDir",
            "'a/../../b' points outside the repository",
        ),
        (
            "maxShutdownDelaySeconds: 301",
            "maxShutdownDelaySeconds",
            "expected a value less than or equal to 300, got 301",
        ),
        (
            "numInstances: '2'",
            "numInstances",
            "expected an integer, got the string '2'",
        ),
        (
            "domains: [-bad-.com]",
            "domains[0]",
            "'-bad-.com' is not a valid hostname",
        ),
        (
            "domain: 'a b'",
            "domain",
            "'a b' is not a valid hostname",
        ),
        (
            "domains: ['*.example.com']",
            "domains[0]",
            "'*.example.com': wildcard domains are not supported yet",
        ),
        ("domains: [intranet]", "domains[0]", "'intranet' is not a full domain name"),
        ("domains: [10.0.0.1]", "domains[0]", "'10.0.0.1' is an IP address or ends in a number"),
        ("domains: [app.localhost]", "domains[0]", "'app.localhost' is under .localhost"),
        ("domains: [bücher.de]", "domains[0]", "'bücher.de' is not a valid hostname: write an"),
        (f"domains: [{'a' * 64}.com]", "domains[0]", f"'{'a' * 64}.com' is not a valid hostname"),
        ('domain: "a\\nb.com"', "domain", "'a\\nb.com' is not a valid hostname"),
        (
            "healthCheckPath: /a b",
            "healthCheckPath",
            "'/a b' has ' ' at position 3, which a health check request cannot carry as is",
        ),
        ("healthCheckPath: '/a#b'", "healthCheckPath", "'/a#b' has '#' at position 3"),
        (f"healthCheckPath: /{'a' * 1024}", "healthCheckPath", "is 1025 characters long"),
        (
            'rootDir: "app\\tb"',
            "rootDir",
            "contains the control character U+0009 at position 4: rootDir cannot hold",
        ),
        ("numInstances: 101", "numInstances", "expected a value less than or equal to 100"),
        ("maxShutdownDelaySeconds: 0", "maxShutdownDelaySeconds", "expected a value greater"),
        (
            'buildCommand: "npm ci\\0"',
            "buildCommand",
            "contains a NUL character (U+0000) at position 7: a process cannot be given one",
        ),
        ('preDeployCommand: "\\0"', "preDeployCommand", "contains a NUL character (U+0000)"),
        (
            'envVars: [{key: X, value: "a\\eb"}]',
            "envVars[0].value",
            "contains the control character U+001B at position 2: a value can hold tab, "
            "newline and carriage return, no other control character",
        ),
        ('envVars: [{key: X, value: "\\0"}]', "envVars[0].value", "contains a NUL character"),
        ('envVars: [{key: "A=B", value: a}]', "envVars[0].key", "invalid environment variable"),
        (
            "envVars: [{key: '', value: a}]",
            "envVars[0].key",
            "invalid environment variable name ''",
        ),
        (
            'envVars: [{key: "A\\n", value: a}]',
            "envVars[0].key",
            "invalid environment variable name 'A\\n': expected a letter or '_', then letters",
        ),
        (
            "envVars: [{key: 9X, value: a}]",
            "envVars[0].key",
            "invalid environment variable name '9X'",
        ),
        (
            "envVars: [{key: X}]",
            "envVars[0]",
            "has no value: expected exactly one of value, generateValue",
        ),
        (
            "envVars: [{key: X, value: a, sync: false}]",
            "envVars[0]",
            "has value and sync: expected exactly one of",
        ),
        (
            "envVars: [{key: X, generateValue: false}]",
            "envVars[0].generateValue",
            "expected true, got the boolean false",
        ),
        (
            "envVars: [{key: X, value: {a: 1}}]",
            "envVars[0].value",
            "expected a string, number or boolean, got a mapping",
        ),
        (
            "envVars: [{key: X, fromGroup: g}]",
            "envVars[0].key",
            "fromGroup takes no key",
        ),
        (
            "envVars: [{value: a}]",
            "envVars[0].key",
            "missing required field",
        ),
        (
            "envVars: [{key: X, fromDatabase: {name: dbb, property: host}}]",
            "envVars[0].fromDatabase.name",
            "no database 'dbb'. Did you mean 'db'?",
        ),
        (
            "envVars: [{key: X, fromDatabase: {name: db, property: url}}]",
            "envVars[0].fromDatabase.property",
            (
                "expected one of connectionString, host, port, user, password, "
                "database; got the string 'url'"
            ),
        ),
        (
            "envVars: [{key: X, fromService: {type: web, name: api}}]",
            "envVars[0].fromService",
            "expected exactly one of property, envVarKey",
        ),
        (
            "envVars: [{key: X, fromService: {type: pserv, name: api, property: host}}]",
            "envVars[0].fromService.type",
            "service 'api' is a web, not a pserv",
        ),
        (
            (
                "envVars: [{key: X, fromService: {type: web, name: api, property: "
                "connectionString}}]"
            ),
            "envVars[0].fromService.property",
            "connectionString is only for keyvalue services",
        ),
        (
            "envVars: [{key: X, fromService: {type: web, name: api, property: hots}}]",
            "envVars[0].fromService.property",
            (
                "expected one of host, port, hostport, connectionString; got the string "
                "'hots'. Did you mean 'host'?"
            ),
        ),
    ],
)
def test_service_field_errors(extra: str, path: str, message: str) -> None:
    text = SERVICE + f"    {extra}\n" + "databases: [{name: db}]\n"
    found = problems(text)
    assert [p["path"] for p in found] == [f"services[0].{path}"]
    assert found[0]["message"].startswith(message)
    assert found[0]["line"] == 6


def test_missing_fields_point_at_the_enclosing_mapping() -> None:
    found = problems(
        """\
        services:
          - type: web
            name: api
          - type: worker
            runtime: ruby
            startCommand: x
          - name: nameless
            runtime: go
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        ("render.yaml:2:5: services[0].runtime", "missing required field (service 'api')"),
        ("render.yaml:4:5: services[1].name", "missing required field"),
        (
            "render.yaml:7:5: services[2].type",
            "missing required field (the service type: web, pserv, worker, cron or keyvalue)",
        ),
    ]


def test_service_names_must_be_dns_labels_and_unique() -> None:
    found = problems(
        """\
        services:
          - {type: worker, name: Jobs, runtime: go, startCommand: a}
          - {type: worker, name: -jobs, runtime: go, startCommand: a}
          - {type: worker, name: jobs, runtime: go, startCommand: a}
          - {type: worker, name: jobs, runtime: go, startCommand: a}
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        (
            "render.yaml:2:20: services[0].name",
            "invalid service name 'Jobs' (uppercase letters are not allowed): use 1-63 lowercase "
            "letters, digits or '-', not starting or ending with '-'. Did you mean 'jobs'?",
        ),
        (
            "render.yaml:3:20: services[1].name",
            "invalid service name '-jobs' (not a DNS label): use 1-63 lowercase letters, digits "
            "or '-', not starting or ending with '-'. Did you mean 'jobs'?",
        ),
        (
            "render.yaml:5:20: services[3].name",
            "duplicate name 'jobs' (first defined at line 4, column 20)",
        ),
    ]


def test_group_rules() -> None:
    found = problems(
        """\
        envVarGroups:
          - name: g
            envVars:
              - {key: A, value: 1}
              - {key: A, value: 2}
              - {key: B, fromGroup: h}
          - name: g
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        ("render.yaml:5:10: envVarGroups[0].envVars[1].key", "duplicate key 'A'"),
        (
            "render.yaml:6:9: envVarGroups[0].envVars[2]",
            "expected exactly one of value, generateValue",
        ),
        (
            "render.yaml:6:18: envVarGroups[0].envVars[2].fromGroup",
            "unknown field; expected one of generateValue, key, value",
        ),
        (
            "render.yaml:7:5: envVarGroups[1].name",
            "duplicate name 'g' (first defined at line 2, column 5)",
        ),
    ]


def test_yaml_anchors_and_merge_keys() -> None:
    loaded = parse(
        """\
        services:
          - &base {type: web, name: a, runtime: python, startCommand: python app.py}
          - <<: *base
            name: b
            type: worker
        """
    )
    assert [(s.name, s.type, s.runtime) for s in loaded.services] == [
        ("a", "web", "python"),
        ("b", "worker", "python"),
    ]


# --- normalized spec ------------------------------------------------------------------------


def test_config_digest_and_to_dict() -> None:
    spec = ServiceSpec(
        name="api",
        type="web",
        runtime="node",
        start_command="npm start",
        env_vars=(EnvVarSpec(key="A", value="1"),),
        domains=("a.example.com",),
    )
    data = spec.to_dict()
    assert data["env_vars"] == [
        {
            "key": "A",
            "value": "1",
            "generate": False,
            "sync": True,
            "from_service": None,
            "from_database": None,
            "from_group": None,
        }
    ]
    assert data["domains"] == ["a.example.com"]
    digest = spec.config_digest()
    assert len(digest) == 64
    assert digest == ServiceSpec(**{**spec.__dict__}).config_digest()
    changed = ServiceSpec(**{**spec.__dict__, "num_instances": 2})
    assert changed.config_digest() != digest


def test_json_schema_uses_yaml_keys() -> None:
    schema = blueprint_json_schema()
    assert set(schema["properties"]) >= {"services", "databases", "envVarGroups", "previews"}
    web = schema["$defs"]["WebService"]
    assert "startCommand" in web["properties"]
    assert web["additionalProperties"] is False


def test_group_items_take_exactly_one_plain_form() -> None:
    found = problems(
        """\
        envVarGroups:
          - name: g
            envVars:
              - {key: A}
              - {key: B, value: 1, generateValue: true}
        services:
          - {type: worker, name: a, runtime: go, startCommand: a, envVars: [1, {fromGroup: 3}]}
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        (
            "render.yaml:4:9: envVarGroups[0].envVars[0]",
            "expected exactly one of value, generateValue",
        ),
        (
            "render.yaml:5:9: envVarGroups[0].envVars[1]",
            "expected exactly one of value, generateValue",
        ),
        ("render.yaml:7:69: services[0].envVars[0]", "expected a mapping, got the number 1"),
        (
            "render.yaml:7:73: services[0].envVars[1].fromGroup",
            "expected a string, got the number 3",
        ),
    ]


def test_env_values_reach_the_process_as_written() -> None:
    text = """
services:
  - type: web
    name: web
    runtime: python
    startCommand: python3 app.py
    numInstances: 2
    envVars:
      - {key: PYTHON_VERSION, value: 3.10}
      - {key: MODE, value: 0755}
      - {key: BIG, value: 1_000}
      - {key: FLAG, value: off}
      - {key: YES, value: true}
"""
    svc = parse_blueprint(text, filename="render.yaml", kind="render").service("web")
    values = {e.key: e.value for e in svc.env_vars}
    assert values == {
        "PYTHON_VERSION": "3.10",
        "MODE": "0755",
        "BIG": "1_000",
        "FLAG": "off",
        "YES": "true",
    }
    assert svc.num_instances == 2 and type(svc.num_instances) is int


def test_start_command_must_be_given_and_not_blank() -> None:
    found = problems(
        """\
        services:
          - {type: web, name: a, runtime: node}
          - {type: web, name: b, runtime: node, startCommand: ''}
          - {type: pserv, name: c, runtime: python, startCommand: "  \\t"}
          - {type: worker, name: d, runtime: go, startCommand: }
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        (
            "render.yaml:2:5: services[0].startCommand",
            "missing required field: service 'a' (runtime node) needs a startCommand",
        ),
        (
            "render.yaml:3:41: services[1].startCommand",
            "empty: service 'b' (runtime node) needs a startCommand, the command that starts it",
        ),
        (
            "render.yaml:4:45: services[2].startCommand",
            "empty: service 'c' (runtime python) needs a startCommand, the command that starts it",
        ),
        (
            "render.yaml:5:42: services[3].startCommand",
            "empty: service 'd' (runtime go) needs a startCommand, the command that starts it",
        ),
    ]


def test_what_processes_and_the_edge_take_is_accepted() -> None:
    # An empty buildCommand means no build step (real Blueprints write `buildCommand: ""`);
    # keys with dots and dashes, tabs and newlines in values, localhost and a trailing dot.
    loaded = parse(
        """\
        services:
          - type: web
            name: api
            runtime: node
            buildCommand: ""
            startCommand: "node server.js\\n"
            healthCheckPath: "/ready?probe=1&x=%20"
            domains: [localhost, WWW.Example.COM., a-b.example.co.uk]
            envVars:
              - {key: xpack.security-enabled, value: "a\\tb\\r\\nc"}
              - {key: _X, value: ""}
        """
    )
    api = loaded.service("api")
    assert api.build_command == ""
    assert api.domains == ("localhost", "www.example.com", "a-b.example.co.uk")
    assert [e.value for e in api.env_vars] == ["a\tb\r\nc", ""]


def test_a_domain_routes_to_one_service() -> None:
    found = problems(
        """\
        services:
          - {type: web, name: a, runtime: node, startCommand: x, domains: [a.example.com]}
          - {type: web, name: b, runtime: node, startCommand: x, domain: A.Example.com.}
          - {type: web, name: c, runtime: static, domains: [a.example.com]}
        """
    )
    assert [(where(p), p["message"]) for p in found] == [
        (
            "render.yaml:3:58: services[1].domain",
            "domain 'a.example.com' is also a domain of service 'a' (services[0]): a domain "
            "routes to one service",
        )
    ]


def test_values_fit_what_a_process_can_be_given() -> None:
    big = "v" * (127 * 1024 + 1)
    found = problems(f"{SERVICE}    envVars: [{{key: A, value: {big}}}]\n")
    assert found[0]["path"] == "services[0].envVars[0].value"
    assert found[0]["message"] == (
        "is 127.0 KiB: an environment variable's value can be at most 127 KiB (Linux passes a "
        "process at most 128 KiB in one string)"
    )
    # Within the file size limit only through aliases: 12 x 100 KiB, half of them from a group.
    value = "v" * (100 * 1024)
    items = "".join(f"      - {{key: K{i}, value: *v}}\n" for i in range(6))
    group = f"envVarGroups:\n  - name: g\n    envVars:\n{items}"
    text = f"x: &v {value}\n{SERVICE}    envVars:\n{items}      - {{fromGroup: g}}\n{group}"
    found = problems(text)
    assert [(where(p), p["message"]) for p in found if p["path"] != "x"] == [
        (
            "render.yaml:7:5: services[0].envVars",
            "1200 KiB of environment variables (with their groups): a service can be given at "
            "most 1024 KiB",
        )
    ]


def test_quoted_values_cannot_break_the_message_lines() -> None:
    found = problems(
        """\
        services:
          - {type: worker, name: "a\\nb", runtime: go, startCommand: x}
        """
    )
    assert found[0]["message"].startswith("invalid service name 'a\\nb' (not a DNS label)")


@pytest.mark.parametrize(
    ("disk", "message"),
    [
        ("{name: d, mountPath: var/data}", "is not an absolute path"),
        ("{name: d, mountPath: /etc/app}", "is a system directory"),
        ("{name: d, mountPath: /var/../etc}", "'.' and '..' are not allowed"),
        ("{name: d, mountPath: /opt/render/project/src}", "is a system directory"),
        ("{name: 'a/b', mountPath: /var/data}", "String should match pattern"),
        ("{name: d, mountPath: /var/data, sizeGB: 0}", "greater than or equal to 1"),
    ],
)
def test_disk_fields_are_checked(disk: str, message: str) -> None:
    text = f"services:\n  - {{type: web, name: w, runtime: node, startCommand: x, disk: {disk}}}\n"
    with pytest.raises(BlueprintError, match=re.escape(message)):
        parse_blueprint(text, filename="render.yaml", kind="render")


def test_a_service_with_a_disk_runs_one_instance() -> None:
    text = textwrap.dedent(
        """
        services:
          - type: pserv
            name: graph
            runtime: node
            startCommand: x
            numInstances: 2
            scaling: {minInstances: 1, maxInstances: 3}
            disk: {name: data, mountPath: /var/lib/neo4j/data, sizeGB: 10}
        """
    )
    with pytest.raises(BlueprintError) as caught:
        parse_blueprint(text, filename="render.yaml", kind="render")
    assert "services[0].numInstances: service 'graph' has a disk: it runs exactly one " in (
        caught.value.message
    )
    assert "services[0].scaling: service 'graph' has a disk: it cannot scale" in (
        caught.value.message
    )
