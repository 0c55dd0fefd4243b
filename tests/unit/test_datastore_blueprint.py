"""Datastores in a Blueprint: ``databases:`` (names derived from the database's name, read
replicas as datastores of their own), Key Value (``type: keyvalue`` and legacy ``redis``), the
``backups`` extension (shipyard.yaml only), ipAllowList sources, one namespace for databases,
replicas and Key Value, PostgreSQL names, and the disks of services."""

from __future__ import annotations

import re
import textwrap

import pytest

from shipyard.blueprint import LoadedBlueprint, parse_blueprint
from shipyard.blueprint.load import Kind
from shipyard.blueprint.spec import AllowedSource, BackupPolicy, DatastoreSpec, DiskSpec
from shipyard.errors import BlueprintError

PG_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def parse(text: str, kind: Kind = "render") -> LoadedBlueprint:
    return parse_blueprint(textwrap.dedent(text), filename=f"{kind}.yaml", kind=kind)


def problems(text: str, kind: Kind = "render") -> list[str]:
    """The problem lines of the error ``text`` is refused with (after the count line)."""
    with pytest.raises(BlueprintError) as info:
        parse(text, kind)
    head, *lines = info.value.message.splitlines()
    count = len(info.value.fields["problems"])
    assert head == f"{kind}.yaml: {count} problem{'s' if count > 1 else ''}:"
    assert len(lines) == count
    return lines


def database(name: str) -> DatastoreSpec:
    found = parse(f"databases:\n  - name: {name!r}\n").datastore(name)
    assert found is not None
    return found


# --- databases: derived names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "database_name", "user"),
    [
        ("app-db", "app_db", "app_db_user"),
        ("My App DB", "my_app_db", "my_app_db_user"),
        ("Shop.Main", "shop_main", "shop_main_user"),
        ("__x__", "x", "x_user"),
        ("1st", "db_1st", "db_1st_user"),
        ("日本", "db", "db_user"),  # nothing ASCII left
        ("café", "caf", "caf_user"),
        # names PostgreSQL or Shipyard use themselves get a suffix
        ("postgres", "postgres_db", "postgres_db_user"),
        ("Postgres", "postgres_db", "postgres_db_user"),
        ("replicator", "replicator_db", "replicator_db_user"),
        ("template1", "template1_db", "template1_db_user"),
        ("public", "public_db", "public_db_user"),
        ("x" * 80, "x" * 63, "x" * 58 + "_user"),  # at most 63 characters
    ],
)
def test_database_and_user_default_from_the_name(name: str, database_name: str, user: str) -> None:
    spec = database(name)
    assert (spec.kind, spec.database_name, spec.user) == ("postgres", database_name, user)


@pytest.mark.parametrize("name", ["app-db", "My App DB", "postgres", "1st", "x" * 80])
def test_derived_names_are_names_the_file_could_give(name: str) -> None:
    """Written out as databaseName and user, the derived names are accepted as they are."""
    spec = database(name)
    assert PG_NAME.fullmatch(spec.database_name) and PG_NAME.fullmatch(spec.user)
    explicit = parse(
        f"databases:\n  - name: other\n    databaseName: {spec.database_name}\n"
        f"    user: {spec.user}\n"
    ).datastore("other")
    assert explicit is not None
    assert (explicit.database_name, explicit.user) == (spec.database_name, spec.user)


@pytest.mark.parametrize("name", ["pg-data", "PG Main", "pg_x"])
def test_derived_names_of_a_pg_name_are_not_reserved(name: str) -> None:
    spec = database(name)
    assert not spec.database_name.startswith("pg_")
    assert not spec.user.startswith("pg_")


def test_derived_names_of_a_long_pg_name_fit_postgresql() -> None:
    spec = database("pg_" + "a" * 70)
    assert len(spec.database_name) <= 63
    assert len(spec.user) <= 63


def test_explicit_names_are_used_and_the_user_derives_from_the_database_name() -> None:
    loaded = parse(
        """
        databases:
          - name: main
            databaseName: shop
          - name: other
            databaseName: shop2
            user: clerk
        """
    )
    assert [(d.database_name, d.user) for d in loaded.datastores] == [
        ("shop", "shop_user"),
        ("shop2", "clerk"),
    ]


def test_database_fields() -> None:
    spec = parse(
        """
        databases:
          - name: main
            plan: pro-4gb
            postgresMajorVersion: 16
            diskSizeGB: 20
        """
    ).datastore("main")
    assert spec == DatastoreSpec(
        name="main", kind="postgres", plan="pro-4gb", database_name="main", user="main_user",
        version="16", disk_size_gb=20, backups=BackupPolicy(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Bad", "'Bad' is not a valid name"),
        ("1db", "'1db' is not a valid name"),
        ("a-b", "'a-b' is not a valid name"),
        ("'a b'", "'a b' is not a valid name"),
        ("''", "'' is not a valid name"),
        ("a" * 64, f"'{'a' * 64}' is not a valid name"),
        ("postgres", "'postgres' is reserved: Shipyard and PostgreSQL use it themselves"),
        ("replicator", "'replicator' is reserved"),
        ("template0", "'template0' is reserved"),
        ("public", "'public' is reserved"),
        ("pg_stats", "'pg_stats' is reserved"),
    ],
)
@pytest.mark.parametrize("field", ["databaseName", "user"])
def test_invalid_postgresql_names(field: str, value: str, message: str) -> None:
    lines = problems(f"databases:\n  - name: main\n    {field}: {value}\n")
    assert len(lines) == 1
    assert lines[0].startswith(f"render.yaml:3:5: databases[0].{field}: {message}")


def test_the_invalid_name_message_says_what_is_valid() -> None:
    assert problems("databases:\n  - name: main\n    user: Bob\n") == [
        "render.yaml:3:5: databases[0].user: 'Bob' is not a valid name: 1-63 lowercase "
        "letters, digits or '_', not starting with a digit"
    ]


@pytest.mark.parametrize("value", ["a" * 63, "_x", "db_1", "x"])
def test_valid_postgresql_names(value: str) -> None:
    spec = parse(f"databases:\n  - name: main\n    databaseName: {value}\n").datastore("main")
    assert spec is not None and spec.database_name == value


# --- read replicas --------------------------------------------------------------------------


def test_read_replicas_become_datastores_that_follow_their_primary() -> None:
    loaded = parse(
        """
        databases:
          - name: main
            plan: pro-4gb
            ipAllowList: [{source: 10.0.0.0/8}]
            readReplicas: [{name: main-ro}, {name: Reports Replica}]
          - name: second
        services:
          - {type: keyvalue, name: cache, ipAllowList: []}
        """
    )
    # primaries each followed by their replicas, then Key Value
    assert [(d.name, d.primary) for d in loaded.datastores] == [
        ("main", None), ("main-ro", "main"), ("Reports Replica", "main"), ("second", None),
        ("cache", None),
    ]  # fmt: skip
    main, replica = loaded.datastore("main"), loaded.datastore("Reports Replica")
    assert main is not None and replica is not None
    assert main.read_replicas == ("main-ro", "Reports Replica")
    assert replica.read_replicas == ()
    # a replica has its primary's database, roles, plan and sources
    assert (replica.kind, replica.database_name, replica.user, replica.plan) == (
        "postgres", "main", "main_user", "pro-4gb",
    )  # fmt: skip
    assert replica.ip_allow_list == (AllowedSource("10.0.0.0/8"),)


def test_a_replica_takes_only_a_name() -> None:
    lines = problems("databases:\n  - name: main\n    readReplicas: [{name: ro, plan: pro}]\n")
    assert len(lines) == 1 and "databases[0].readReplicas[0].plan: unknown field" in lines[0]


# --- Key Value --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["keyvalue", "redis"])
def test_key_value(kind: str) -> None:
    loaded = parse(
        f"""
        services:
          - type: {kind}
            name: cache
            plan: starter
            maxmemoryPolicy: allkeys-lru
            ipAllowList: []
        """
    )
    assert loaded.datastores == (
        DatastoreSpec(name="cache", kind="keyvalue", plan="starter",
                      maxmemory_policy="allkeys-lru"),
    )  # fmt: skip
    assert loaded.services == ()  # a datastore, not a service Shipyard runs
    deprecated = [n for n in loaded.notices if n.path == "services[0].type"]
    assert len(deprecated) == (1 if kind == "redis" else 0)


def test_key_value_needs_an_ip_allow_list() -> None:
    assert problems("services:\n  - {type: keyvalue, name: cache}\n") == [
        "render.yaml:2:5: services[0].ipAllowList: missing required field"
    ]


def test_key_value_maxmemory_policy_is_checked() -> None:
    lines = problems("services:\n  - {type: keyvalue, name: c, ipAllowList: [], "
                     "maxmemoryPolicy: lru}\n")  # fmt: skip
    assert len(lines) == 1 and "services[0].maxmemoryPolicy" in lines[0]


def test_key_value_sources_are_noted_as_not_reachable_yet() -> None:
    loaded = parse("services:\n  - {type: keyvalue, name: c, ipAllowList: [{source: 10.0.0.1}]}\n")
    spec = loaded.datastore("c")
    assert spec is not None and spec.ip_allow_list == (AllowedSource("10.0.0.1/32"),)
    notes = {n.path: n.message for n in loaded.notices}
    assert "reachable from this machine only" in notes["services[0].ipAllowList"]


# --- backups (a Shipyard extension) ---------------------------------------------------------

DB_BACKUPS = """
databases:
  - name: main
    backups: {backups}
"""
KV_BACKUPS = """
services:
  - type: keyvalue
    name: cache
    ipAllowList: []
    backups: {backups}
"""


@pytest.mark.parametrize(
    ("template", "where"),
    [(DB_BACKUPS, "render.yaml:4:5: databases[0]"), (KV_BACKUPS, "render.yaml:6:5: services[0]")],
)
def test_backups_are_refused_in_render_yaml(template: str, where: str) -> None:
    text = template.replace("{backups}", "{schedule: '0 3 * * *'}")
    assert problems(text, "render") == [
        f"{where}.backups: is a Shipyard extension: move it to shipyard.yaml"
    ]


def test_backups_in_shipyard_yaml() -> None:
    loaded = parse(
        """
        databases:
          - name: main
            backups:
              schedule: "30  1 * * *"
              retentionDays: 14
              pitrRetentionDays: 3
              drillSchedule: "0 5 * * 6"
              offsite: false
            readReplicas: [{name: ro}]
        services:
          - type: keyvalue
            name: cache
            ipAllowList: []
            backups: {schedule: "*/30 * * * *", retentionDays: 3650}
        """,
        "shipyard",
    )
    wanted = BackupPolicy(schedule="30 1 * * *", retention_days=14, pitr_retention_days=3,
                          drill_schedule="0 5 * * 6", offsite=False)  # fmt: skip
    assert [d.backups for d in loaded.datastores] == [
        wanted,
        wanted,  # a replica carries its primary's (it is backed up through it)
        BackupPolicy(schedule="*/30 * * * *", retention_days=3650),
    ]


@pytest.mark.parametrize("kind", ["render", "shipyard"])
def test_backup_defaults(kind: Kind) -> None:
    spec = parse("databases:\n  - name: main\n", kind).datastore("main")
    assert spec is not None
    assert spec.backups == BackupPolicy(
        schedule="0 3 * * *", retention_days=30, pitr_retention_days=7,
        drill_schedule="0 4 * * 0", offsite=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    "schedule",
    ["@daily", "0 3 * *", "0 3 * * * *", "61 * * * *", "0 25 * * *", "0 3 * * 8", "daily", ""],
)
@pytest.mark.parametrize("field", ["schedule", "drillSchedule"])
def test_a_schedule_is_a_five_field_cron(field: str, schedule: str) -> None:
    text = DB_BACKUPS.replace("{backups}", f"{{{field}: '{schedule}'}}")
    lines = problems(text, "shipyard")
    assert len(lines) == 1
    assert lines[0].startswith("shipyard.yaml:4:")
    assert f"databases[0].backups.{field}: " in lines[0]
    expected = f"{schedule!r} is not a cron schedule: 5 fields (minute hour day month weekday)"
    assert expected in lines[0]


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("retentionDays", 0, False),
        ("retentionDays", 1, True),
        ("retentionDays", 3650, True),
        ("retentionDays", 3651, False),
        ("pitrRetentionDays", 0, False),
        ("pitrRetentionDays", 1, True),
        ("pitrRetentionDays", 35, True),
        ("pitrRetentionDays", 36, False),
    ],
)
def test_retention_bounds(field: str, value: int, ok: bool) -> None:
    text = DB_BACKUPS.replace("{backups}", f"{{{field}: {value}}}")
    if ok:
        spec = parse(text, "shipyard").datastore("main")
        assert spec is not None
        policy = spec.backups
        got = policy.retention_days if field == "retentionDays" else policy.pitr_retention_days
        assert got == value
    else:
        lines = problems(text, "shipyard")
        assert len(lines) == 1 and f"databases[0].backups.{field}: expected a value" in lines[0]


def test_unknown_backup_fields_are_refused() -> None:
    lines = problems(DB_BACKUPS.replace("{backups}", "{keep: 3}"), "shipyard")
    assert len(lines) == 1 and "databases[0].backups.keep: unknown field" in lines[0]


# --- ipAllowList ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "cidr"),
    [
        ("10.0.0.1", "10.0.0.1/32"),
        ("10.1.2.3/8", "10.0.0.0/8"),  # host bits dropped
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("' 192.168.0.0/16 '", "192.168.0.0/16"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("'::/0'", "::/0"),
    ],
)
def test_ip_allow_list_sources_are_normalized(source: str, cidr: str) -> None:
    text = f"databases:\n  - name: main\n    ipAllowList:\n      - {{source: {source}}}\n"
    spec = parse(text).datastore("main")
    assert spec is not None and spec.ip_allow_list == (AllowedSource(cidr, ""),)


def test_ip_allow_list_keeps_descriptions_and_order() -> None:
    spec = parse(
        """
        databases:
          - name: main
            ipAllowList:
              - {source: 203.0.113.4, description: office}
              - {source: 10.0.0.0/8}
        """
    ).datastore("main")
    assert spec is not None
    assert spec.ip_allow_list == (AllowedSource("203.0.113.4/32", "office"),
                                  AllowedSource("10.0.0.0/8", ""))  # fmt: skip


def test_without_ip_allow_list_a_database_is_internal_only() -> None:
    bare = parse("databases: [{name: m}]\n")
    spec = bare.datastore("m")
    assert spec is not None and spec.ip_allow_list == ()
    notes = {n.path: n.message for n in bare.notices}
    assert notes["databases[0]"].startswith("no ipAllowList: reachable from this machine only")
    # an empty list says so explicitly: no notice
    explicit = parse("databases: [{name: m, ipAllowList: []}]\n")
    assert explicit.notices == ()


@pytest.mark.parametrize("source", ["10.0.0.300", "example.com", "10.0.0.0/33", "''", "10.0.0"])
def test_a_bad_source_is_refused_where_it_is(source: str) -> None:
    text = (
        "databases:\n"
        "  - name: main\n"
        "    ipAllowList:\n"
        "      - {source: 10.0.0.1}\n"
        f"      - {{source: {source}, description: x}}\n"
    )
    shown = source.strip("'")
    assert problems(text) == [
        f"render.yaml:5:10: databases[0].ipAllowList[1].source: '{shown}' is not an IP address "
        "or CIDR block (for example '203.0.113.0/24', '0.0.0.0/0' for everyone)"
    ]


def test_a_bad_key_value_source_is_refused_too() -> None:
    lines = problems("services:\n  - {type: keyvalue, name: c, ipAllowList: [{source: nope}]}\n")
    assert len(lines) == 1
    assert "services[0].ipAllowList[0].source: 'nope' is not an IP address" in lines[0]


# --- one namespace for databases, replicas and Key Value ------------------------------------

DISTINCT = "databases, read replicas and Key Value instances need distinct names"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "databases:\n  - {name: x, readReplicas: [{name: x}]}\n",
            [
                "render.yaml:2:31: databases[0].readReplicas[0].name: name 'x' is also used by "
                f"databases[0]: {DISTINCT}"
            ],
        ),
        (
            "databases:\n  - {name: a, readReplicas: [{name: r}]}\n"
            "  - {name: b, readReplicas: [{name: r}]}\n",
            [
                "render.yaml:3:31: databases[1].readReplicas[0].name: name 'r' is also used by "
                f"databases[0].readReplicas[0]: {DISTINCT}"
            ],
        ),
        (
            "databases:\n  - {name: a, readReplicas: [{name: b}]}\n  - {name: b}\n",
            [
                f"render.yaml:3:6: databases[1].name: name 'b' is also used by "
                f"databases[0].readReplicas[0]: {DISTINCT}"
            ],
        ),
        (
            "databases:\n  - {name: cache}\n"
            "services:\n  - {type: keyvalue, name: cache, ipAllowList: []}\n",
            [
                f"render.yaml:4:22: services[0].name: name 'cache' is also used by databases[0]: "
                f"{DISTINCT}"
            ],
        ),
        (
            "databases:\n  - {name: a, readReplicas: [{name: cache}]}\n"
            "services:\n  - {type: redis, name: cache, ipAllowList: []}\n",
            [
                f"render.yaml:4:19: services[0].name: name 'cache' is also used by "
                f"databases[0].readReplicas[0]: {DISTINCT}"
            ],
        ),
        (
            "databases:\n  - {name: a}\n  - {name: a}\n",
            [
                "render.yaml:3:6: databases[1].name: duplicate name 'a' (first defined at line 2, "
                "column 6)"
            ],
        ),
        (
            "services:\n  - {type: keyvalue, name: c, ipAllowList: []}\n"
            "  - {type: keyvalue, name: c, ipAllowList: []}\n",
            [
                "render.yaml:3:22: services[1].name: duplicate name 'c' (first defined at line 2, "
                "column 22)"
            ],
        ),
    ],
)
def test_datastore_names_clash(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_a_service_may_share_a_database_name() -> None:
    """Services and databases are separate namespaces on Render (render-examples do it)."""
    loaded = parse(
        "services:\n  - {type: web, name: app, runtime: node, startCommand: node s.js}\n"
        "databases:\n  - {name: app}\n"
    )
    assert [s.name for s in loaded.services] == ["app"]
    assert [d.name for d in loaded.datastores] == ["app"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("'   '", "blank name"),
        ("a/b", "invalid name 'a/b': no '/', '\\' or control characters"),
        ("'..'", "invalid name '..'"),
        ("x" * 101, "name of 101 characters: at most 100"),
    ],
)
def test_datastore_names_a_path_cannot_carry(name: str, problem: str) -> None:
    lines = problems(f"databases:\n  - name: {name}\n")
    assert len(lines) == 1
    assert lines[0].startswith(f"render.yaml:2:5: databases[0].name: {problem}")


def test_a_replica_name_is_checked_too() -> None:
    lines = problems("databases:\n  - {name: a, readReplicas: [{name: 'r/1'}]}\n")
    assert len(lines) == 1 and "databases[0].readReplicas[0].name: invalid name 'r/1'" in lines[0]


# --- disks ------------------------------------------------------------------------------------

WEB = """
services:
  - type: web
    name: api
    runtime: node
    startCommand: node s.js
"""


@pytest.mark.parametrize(
    ("mount", "normalized"),
    [("/var/data", "/var/data"), ("/var/data/", "/var/data"), ("//srv//data/", "/srv/data"),
     ("/data", "/data"), ("/opt/render/project/src/data", "/opt/render/project/src/data")],
)  # fmt: skip
def test_a_disk_mount_path_is_normalized(mount: str, normalized: str) -> None:
    loaded = parse(WEB + f"    disk: {{name: data, mountPath: '{mount}'}}\n")
    assert loaded.services[0].disk == DiskSpec("data", normalized, 10)


@pytest.mark.parametrize(
    ("mount", "problem"),
    [
        ("var/data", "'var/data' is not an absolute path"),
        ("/var/../data", "'/var/../data': '.' and '..' are not allowed in a mountPath"),
        ("/srv/./data", "'.' and '..' are not allowed"),
        ("/", "is a system directory"),
        ("/etc/app", "'/etc/app' is a system directory"),
        ("/proc/1", "is a system directory"),
        ("/usr", "is a system directory"),
        ("/tmp", "is a system directory"),
        ("/tmp/", "is a system directory"),
        ("/var", "is a system directory"),
        ("/home", "is a system directory"),
        ("/opt/render/project/src", "is a system directory"),
    ],
)
def test_a_disk_mount_path_is_refused(mount: str, problem: str) -> None:
    lines = problems(WEB + f"    disk: {{name: data, mountPath: '{mount}'}}\n")
    assert len(lines) == 1
    assert lines[0].startswith("render.yaml:7:24: services[0].disk.mountPath: ")
    assert problem in lines[0]


def test_a_disk_size_and_name() -> None:
    loaded = parse(WEB + "    disk: {name: index.v2, mountPath: /srv/index, sizeGB: 25}\n")
    assert loaded.services[0].disk == DiskSpec("index.v2", "/srv/index", 25)
    lines = problems(WEB + "    disk: {name: -bad, mountPath: /srv/index, sizeGB: 0}\n")
    assert [line.split(": ")[1] for line in lines] == [
        "services[0].disk.name", "services[0].disk.sizeGB",
    ]  # fmt: skip


def test_a_service_with_a_disk_runs_one_instance() -> None:
    assert problems(WEB + "    numInstances: 2\n    disk: {name: d, mountPath: /srv/d}\n") == [
        "render.yaml:7:5: services[0].numInstances: service 'api' has a disk: it runs exactly "
        "one instance, not 2 (a disk has one writer)"
    ]
    loaded = parse(WEB + "    numInstances: 1\n    disk: {name: d, mountPath: /srv/d}\n")
    assert loaded.services[0].num_instances == 1


def test_a_service_with_a_disk_cannot_scale() -> None:
    text = WEB + "    scaling: {minInstances: 1, maxInstances: 3}\n"
    text += "    disk: {name: d, mountPath: /d}\n"
    assert problems(text) == ["render.yaml:7:5: services[0].scaling: service 'api' has a disk: "
                              "it cannot scale"]  # fmt: skip
