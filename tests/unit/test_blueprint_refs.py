"""Resolving env vars (generateValue, groups, fromService) and deploy order."""

from __future__ import annotations

import base64
import itertools
import textwrap

from shipyard.blueprint import (
    Endpoint,
    EnvVarSpec,
    FromService,
    ServiceSpec,
    dependency_order,
    dependency_waves,
    generate_secret,
    parse_blueprint,
    resolve_env,
)

BLUEPRINT = textwrap.dedent(
    """\
    services:
      - type: web
        name: api
        runtime: node
        startCommand: npm start
        envVars:
          - fromGroup: shared
          - key: LOG_LEVEL
            value: debug
          - key: PORT
            value: 3000
          - key: SECRET
            generateValue: true
          - key: STRIPE_KEY
            sync: false
          - key: DATABASE_URL
            fromDatabase: {name: db, property: connectionString}
          - key: SEARCH
            fromService: {type: pserv, name: search, property: hostport}
          - key: SEARCH_HOST
            fromService: {type: pserv, name: search, property: host}
          - key: SEARCH_PORT
            fromService: {type: pserv, name: search, property: port}
          - key: SEARCH_TOKEN
            fromService: {type: pserv, name: search, envVarKey: TOKEN}
          - key: MISSING
            fromService: {type: pserv, name: search, envVarKey: NOPE}
      - type: pserv
        name: search
        runtime: go
        startCommand: ./search
    databases:
      - name: db
    envVarGroups:
      - name: shared
        envVars:
          - {key: LOG_LEVEL, value: info}
          - {key: REGION, value: home}
          - {key: GROUP_SECRET, generateValue: true}
    """
)


def test_resolve_env_full() -> None:
    loaded = parse_blueprint(BLUEPRINT, filename="render.yaml", kind="render")
    numbers = itertools.count(1)
    resolved = resolve_env(
        loaded.service("api"),
        groups=loaded.groups,
        endpoints={"search": Endpoint(host="127.0.0.1", port=7001)},
        service_env={"search": {"TOKEN": "t0k"}},
        generated={"SECRET": "kept"},
        new_secret=lambda: f"new{next(numbers)}",
    )
    assert resolved.values == {
        "LOG_LEVEL": "debug",  # the service's own entry overrides the group
        "REGION": "home",
        "GROUP_SECRET": "new1",
        "PORT": "3000",
        "SECRET": "kept",
        "SEARCH": "127.0.0.1:7001",
        "SEARCH_HOST": "127.0.0.1",
        "SEARCH_PORT": "7001",
        "SEARCH_TOKEN": "t0k",
    }
    assert list(resolved.values)[:3] == ["LOG_LEVEL", "REGION", "GROUP_SECRET"]
    assert resolved.generated == {"group:shared:GROUP_SECRET": "new1", "SECRET": "kept"}
    assert resolved.unset == (
        "STRIPE_KEY: sync: false, the operator supplies the value",
        "DATABASE_URL: database 'db' does not exist in Shipyard",
        "MISSING: service 'search' has no env var 'NOPE'",
    )


def test_resolve_env_reads_datastores() -> None:
    text = """
    services:
      - type: worker
        name: app
        runtime: node
        startCommand: node app.js
        envVars:
          - {key: DATABASE_URL, fromDatabase: {name: db, property: connectionString}}
          - {key: DB_USER, fromDatabase: {name: db, property: user}}
          - {key: READ_URL, fromDatabase: {name: db-replica, property: connectionString}}
          - {key: REDIS_URL, fromService: {type: redis, name: cache, property: connectionString}}
          - {key: REDIS_HOSTPORT, fromService: {type: keyvalue, name: cache, property: hostport}}
          - {key: NOPE, fromDatabase: {name: db, property: password}}
      - {type: keyvalue, name: cache, ipAllowList: []}
    databases:
      - name: db
        readReplicas: [{name: db-replica}]
    """
    loaded = parse_blueprint(textwrap.dedent(text), filename="render.yaml", kind="render")
    assert [(d.name, d.primary) for d in loaded.datastores] == [
        ("db", None), ("db-replica", "db"), ("cache", None)
    ]  # fmt: skip
    resolved = resolve_env(
        loaded.service("app"),
        groups=loaded.groups,
        endpoints={},
        service_env={},
        generated={},
        datastores={
            "db": {"connectionString": "postgresql://u:p@h:1/d", "user": "u"},
            "db-replica": {"connectionString": "postgresql://u:p@h:2/d"},
            "cache": {"connectionString": "redis://default:p@h:3", "hostport": "h:3"},
        },
    )
    assert resolved.values == {
        "DATABASE_URL": "postgresql://u:p@h:1/d",
        "DB_USER": "u",
        "READ_URL": "postgresql://u:p@h:2/d",
        "REDIS_URL": "redis://default:p@h:3",
        "REDIS_HOSTPORT": "h:3",
    }
    assert resolved.unset == ("NOPE: database 'db' has no property 'password'",)


def test_generate_value_is_stable_across_deploys() -> None:
    loaded = parse_blueprint(BLUEPRINT, filename="render.yaml", kind="render")
    api = loaded.service("api")
    first = resolve_env(api, groups=loaded.groups, endpoints={}, service_env={}, generated={})
    second = resolve_env(
        api, groups=loaded.groups, endpoints={}, service_env={}, generated=first.generated
    )
    assert second.values["SECRET"] == first.values["SECRET"]
    assert second.values["GROUP_SECRET"] == first.values["GROUP_SECRET"]
    assert second.generated == first.generated
    assert first.values["SECRET"] != first.values["GROUP_SECRET"]
    assert "SEARCH: service 'search' (pserv) has no endpoint" in first.unset


def test_generate_secret_is_256_random_bits() -> None:
    secret = generate_secret()
    assert len(base64.b64decode(secret)) == 32
    assert secret != generate_secret()


def test_service_value_overrides_unset_group_value() -> None:
    spec = ServiceSpec(
        name="a",
        type="worker",
        runtime="go",
        start_command="a",
        env_vars=(EnvVarSpec(key="X", sync=False), EnvVarSpec(key=None, from_group="g")),
    )
    resolved = resolve_env(
        spec,
        groups={"g": (EnvVarSpec(key="X", value="from-group"),)},
        endpoints={},
        service_env={},
        generated={},
    )
    assert resolved.values == {"X": "from-group"}
    assert resolved.unset == ()


def _svc(name: str, *refs: str) -> ServiceSpec:
    env = tuple(
        EnvVarSpec(key=f"K{i}", from_service=FromService("pserv", ref, "host", None))
        for i, ref in enumerate(refs)
    )
    return ServiceSpec(name=name, type="pserv", runtime="go", start_command="x", env_vars=env)


def test_dependency_order_referenced_first_else_file_order() -> None:
    services = [_svc("web", "api", "cache"), _svc("worker"), _svc("api", "cache"), _svc("cache")]
    assert dependency_order(services) == ["worker", "cache", "api", "web"]
    assert dependency_waves(services) == [["worker", "cache"], ["api"], ["web"]]
    assert dependency_order([_svc("a"), _svc("b"), _svc("c")]) == ["a", "b", "c"]
    assert dependency_waves([_svc("a"), _svc("b"), _svc("c")]) == [["a", "b", "c"]]


def test_dependency_order_cycle_keeps_file_order() -> None:
    services = [_svc("a", "b"), _svc("b", "a"), _svc("c", "a"), _svc("d", "ghost", "d")]
    assert dependency_order(services) == ["d", "a", "b", "c"]
    assert dependency_waves(services) == [["d"], ["a"], ["b", "c"]]
    assert dependency_order([_svc("x", "y"), _svc("y", "x")]) == ["x", "y"]
