"""The pure parts of the PostgreSQL driver: shipyard.conf, pg_hba.conf and pg_ident.conf as
rendered from a spec (read back as settings and as pg_hba's first-match rules), the memory of
a plan, SCRAM-SHA-256 verifiers (recomputed here from RFC 5802), replication slot names and
the file layout of a database (its socket directory under the unix socket path limit)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from pathlib import Path

import pytest

from shipyard.blueprint.spec import AllowedSource, DatastoreSpec
from shipyard.drivers.postgres.config import (
    DEFAULT_MEMORY_MB,
    ServerConfig,
    hba_conf,
    ident_conf,
    plan_memory_mb,
    server_conf,
)
from shipyard.drivers.postgres.engine import (
    SOCKET_PATH_MAX,
    layout,
    replication_slot,
    scram_verifier,
)
from shipyard.records import Datastore, DatastoreStatus

BASE = ServerConfig(port=5433, socket_dir="/srv/shipyard/data/db/run", memory_mb=1024)
OFFICE = AllowedSource("203.0.113.0/24", "office")
VPN = AllowedSource("2001:db8::/32")


def settings(text: str) -> dict[str, str]:
    """shipyard.conf as name -> raw value; a name set twice fails the test (the last would
    silently win in PostgreSQL)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, value = line.partition(" = ")
        assert name not in found, f"{name} set twice"
        found[name] = value
    return found


def unquote(value: str) -> str:
    """A single-quoted postgresql.conf value, read as PostgreSQL's lexer reads it."""
    assert value.startswith("'") and value.endswith("'"), value
    body = value[1:-1]
    assert re.fullmatch(r"(?:[^'\\]|''|\\.)*", body), f"unbalanced quoting: {value}"
    return re.sub(r"''|\\(.)", lambda m: m.group(1) or "'", body)


# --- shipyard.conf --------------------------------------------------------------------------


def test_loopback_only_without_an_allow_list() -> None:
    conf = settings(server_conf(BASE))
    assert conf["listen_addresses"] == "'127.0.0.1'"
    assert conf["port"] == "5433"
    assert unquote(conf["unix_socket_directories"]) == "/srv/shipyard/data/db/run"
    assert conf["unix_socket_permissions"] == "0700"
    assert conf["password_encryption"] == "'scram-sha-256'"
    assert (conf["timezone"], conf["log_timezone"]) == ("'UTC'", "'UTC'")


@pytest.mark.parametrize("allow", [(OFFICE,), (OFFICE, VPN), (VPN,)])
def test_an_allow_list_listens_on_every_address(allow: tuple[AllowedSource, ...]) -> None:
    conf = settings(server_conf(ServerConfig(5433, "/run/x", 1024, allow=allow)))
    assert conf["listen_addresses"] == "'*'"


def test_replication_settings_are_always_on() -> None:
    """A read replica can follow any primary: WAL for replicas, senders and slots."""
    conf = settings(server_conf(BASE))
    assert conf["wal_level"] == "replica"
    assert int(conf["max_wal_senders"]) >= 1 and int(conf["max_replication_slots"]) >= 1
    assert conf["hot_standby"] == "on"


def test_archiving_off_without_an_archive_command() -> None:
    conf = settings(server_conf(BASE))
    assert conf["archive_mode"] == "off"
    assert "archive_command" not in conf and "archive_timeout" not in conf


def test_archiving_on_with_an_archive_command() -> None:
    command = "pgbackrest --stanza=db archive-push %p"
    conf = settings(server_conf(ServerConfig(5433, "/run/x", 1024, archive_command=command)))
    assert conf["archive_mode"] == "on"
    assert conf["archive_timeout"] == "60"
    assert unquote(conf["archive_command"]) == command


@pytest.mark.parametrize(
    ("socket_dir", "command", "quoted_dir", "quoted_command"),
    [
        ("/home/o'neil/run", "cmd 'a b' %p", "'/home/o''neil/run'", "'cmd ''a b'' %p'"),
        ("/run/back\\slash", "echo \\' %p", "'/run/back\\\\slash'", "'echo \\\\'' %p'"),
        ("/run/''", "''", "'/run/'''''", "''''''"),
    ],
)
def test_quotes_and_backslashes_are_escaped(
    socket_dir: str, command: str, quoted_dir: str, quoted_command: str
) -> None:
    conf = settings(server_conf(ServerConfig(5433, socket_dir, 1024, archive_command=command)))
    assert conf["unix_socket_directories"] == quoted_dir
    assert conf["archive_command"] == quoted_command
    assert unquote(conf["unix_socket_directories"]) == socket_dir
    assert unquote(conf["archive_command"]) == command


@pytest.mark.parametrize(
    ("plan", "memory_mb", "shared_buffers", "effective_cache_size", "max_connections"),
    [
        ("free", 256, "64MB", "192MB", "100"),
        ("basic-256mb", 256, "64MB", "192MB", "100"),
        ("starter", 256, "64MB", "192MB", "100"),
        ("basic-1gb", 1024, "256MB", "768MB", "100"),
        ("pro-4gb", 4096, "1024MB", "3072MB", "100"),
        ("PRO-4GB", 4096, "1024MB", "3072MB", "100"),  # plan names are case-insensitive
        ("pro-8gb", 8192, "2048MB", "6144MB", "200"),
        ("pro-16gb", 16384, "4096MB", "12288MB", "200"),
        ("pro-32gb", 32768, "8192MB", "24576MB", "400"),
        ("no-such-plan", DEFAULT_MEMORY_MB, "256MB", "768MB", "100"),
        (None, DEFAULT_MEMORY_MB, "256MB", "768MB", "100"),
        ("", DEFAULT_MEMORY_MB, "256MB", "768MB", "100"),
    ],
)
def test_memory_settings_follow_the_plan(
    plan: str | None,
    memory_mb: int,
    shared_buffers: str,
    effective_cache_size: str,
    max_connections: str,
) -> None:
    assert plan_memory_mb(plan) == memory_mb
    conf = settings(server_conf(ServerConfig(5433, "/run/x", plan_memory_mb(plan))))
    assert conf["shared_buffers"] == shared_buffers
    assert conf["effective_cache_size"] == effective_cache_size
    assert conf["max_connections"] == max_connections


def test_the_default_memory_is_a_gigabyte() -> None:
    assert DEFAULT_MEMORY_MB == 1024


def test_tiny_memory_keeps_floor_values() -> None:
    conf = settings(server_conf(ServerConfig(5433, "/run/x", memory_mb=64)))
    assert (conf["shared_buffers"], conf["effective_cache_size"]) == ("32MB", "64MB")


# --- pg_hba.conf ------------------------------------------------------------------------------

Hba = tuple[str, str, str, str | None, str]  # type, database, user, address, method


def hba_rules(text: str) -> list[Hba]:
    rules: list[Hba] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "local":
            rules.append((words[0], words[1], words[2], None, " ".join(words[3:])))
        else:
            rules.append((words[0], words[1], words[2], words[3], " ".join(words[4:])))
    return rules


def first_match(text: str, conn_type: str, database: str, user: str, addr: str | None) -> str:
    """pg_hba's rule: the method of the first line that matches, or "refused" (no line)."""
    for kind, db, role, cidr, method in hba_rules(text):
        if kind != conn_type:
            continue
        # "all" does not match replication connections; "replication" matches only them
        wanted = ("replication",) if database == "replication" else ("all", database)
        if db not in wanted:
            continue
        if role not in ("all", user):
            continue
        if cidr is not None:
            assert addr is not None
            network = ipaddress.ip_network(cidr)
            address = ipaddress.ip_address(addr)
            if address.version != network.version or address not in network:
                continue
        return method
    return "refused"


@pytest.mark.parametrize(
    ("conn_type", "database", "user", "addr", "method"),
    [
        # the superuser: the unix socket only, peer authentication through the ident map
        ("local", "app", "postgres", None, "peer map=shipyard"),
        ("local", "replication", "postgres", None, "peer map=shipyard"),
        ("host", "app", "postgres", "127.0.0.1", "reject"),
        ("host", "app", "postgres", "::1", "reject"),
        ("host", "app", "postgres", "203.0.113.7", "reject"),  # even from an allowed source
        ("host", "postgres", "postgres", "2001:db8::5", "reject"),
        # the app's own role: scram-sha-256, from loopback and the allowed sources
        ("local", "app", "app_user", None, "scram-sha-256"),
        ("host", "app", "app_user", "127.0.0.1", "scram-sha-256"),
        ("host", "app", "app_user", "::1", "scram-sha-256"),
        ("host", "app", "app_user", "203.0.113.7", "scram-sha-256"),
        ("host", "app", "app_user", "2001:db8::5", "scram-sha-256"),
        ("host", "app", "app_user", "198.51.100.1", "refused"),
        ("host", "app", "app_user", "2001:db9::1", "refused"),
        # streaming replication: the replicator role, from loopback only
        ("host", "replication", "replicator", "127.0.0.1", "scram-sha-256"),
        ("host", "replication", "replicator", "::1", "scram-sha-256"),
        ("host", "replication", "replicator", "203.0.113.7", "refused"),
        ("host", "replication", "app_user", "127.0.0.1", "refused"),
        ("host", "replication", "postgres", "127.0.0.1", "refused"),
    ],
)
def test_hba_first_match_per_connection(
    conn_type: str, database: str, user: str, addr: str | None, method: str
) -> None:
    text = hba_conf([OFFICE, VPN])
    assert first_match(text, conn_type, database, user, addr) == method


def test_hba_without_allow_list_is_loopback_only() -> None:
    text = hba_conf([])
    assert first_match(text, "host", "app", "app_user", "127.0.0.1") == "scram-sha-256"
    assert first_match(text, "host", "app", "app_user", "203.0.113.7") == "refused"
    assert [r for r in hba_rules(text) if r[3] not in (None, "127.0.0.1/32", "::1/128")] == [
        ("host", "all", "postgres", "0.0.0.0/0", "reject"),
        ("host", "all", "postgres", "::/0", "reject"),
    ]


def test_hba_rejects_the_superuser_before_any_all_all_line() -> None:
    rules = hba_rules(hba_conf([OFFICE, VPN]))
    rejects = [i for i, r in enumerate(rules) if r[0] == "host" and r[2] == "postgres"]
    all_all = [i for i, r in enumerate(rules) if r[0] == "host" and r[1:3] == ("all", "all")]
    assert {rules[i][4] for i in rejects} == {"reject"}
    assert {rules[i][3] for i in rejects} == {"0.0.0.0/0", "::/0"}
    assert len(all_all) == 4 and max(rejects) < min(all_all)


def test_hba_one_scram_line_per_allowed_source_in_order() -> None:
    sources = [OFFICE, AllowedSource("10.0.0.1/32"), VPN]
    lines = [ln for ln in hba_conf(sources).splitlines() if ln.startswith("host all all")]
    assert lines[2:] == [
        "host all all 203.0.113.0/24 scram-sha-256  # office",
        "host all all 10.0.0.1/32 scram-sha-256",
        "host all all 2001:db8::/32 scram-sha-256",
    ]


def test_hba_description_cannot_start_a_new_line() -> None:
    """A description is the Blueprint's text: a newline in it must not become a rule."""
    text = hba_conf([AllowedSource("10.0.0.0/8", "office\nhost all postgres 0.0.0.0/0 trust")])
    assert "trust" not in {r[4] for r in hba_rules(text)}
    assert first_match(text, "host", "app", "postgres", "10.1.1.1") == "reject"
    line = next(ln for ln in text.splitlines() if "10.0.0.0/8" in ln)
    assert line == (
        "host all all 10.0.0.0/8 scram-sha-256  # office host all postgres 0.0.0.0/0 trust"
    )


# --- pg_ident.conf ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "mapped"),
    [
        (["postgres", "root"], ["postgres", "root"]),
        (["shipyard", "shipyard"], ["shipyard"]),  # Shipyard runs as the server's account
        (["postgres", "root", "postgres"], ["postgres", "root"]),
        ([], []),
    ],
)
def test_ident_map_lines_are_deduplicated(users: list[str], mapped: list[str]) -> None:
    lines = [ln for ln in ident_conf(users).splitlines() if not ln.startswith("#")]
    assert lines == [f"shipyard {user} postgres" for user in mapped]


# --- SCRAM verifiers ------------------------------------------------------------------------

VERIFIER = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>\d+):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)"
)


@pytest.mark.parametrize(
    ("password", "iterations"),
    [("s3cret", 4096), ("pässwörd ☃", 4096), ("", 1), ("x" * 200, 10)],
)
def test_scram_verifier_is_a_correct_rfc5802_verifier(password: str, iterations: int) -> None:
    verifier = scram_verifier(password, iterations)
    found = VERIFIER.fullmatch(verifier)
    assert found is not None, verifier
    assert int(found["iterations"]) == iterations
    salt = base64.b64decode(found["salt"], validate=True)
    assert len(salt) == 16
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert base64.b64decode(found["stored"], validate=True) == stored_key
    assert base64.b64decode(found["server"], validate=True) == server_key


def test_scram_verifier_proves_the_password_and_no_other() -> None:
    """The client proof of a SCRAM exchange made with the right password checks against the
    stored key; made with another password it does not."""
    found = VERIFIER.fullmatch(scram_verifier("right"))
    assert found is not None
    salt, iterations = base64.b64decode(found["salt"]), int(found["iterations"])
    stored_key = base64.b64decode(found["stored"])
    auth_message = b"n=,r=nonce,r=nonce-server,s=...,i=4096,c=biws,r=nonce-server"

    def proof_checks(password: str) -> bool:
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature.digest(), strict=True))
        # the server's side: ClientKey = proof XOR HMAC(StoredKey, AuthMessage)
        server_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        recovered = bytes(a ^ b for a, b in zip(proof, server_sig, strict=True))
        return hashlib.sha256(recovered).digest() == stored_key

    assert proof_checks("right")
    assert not proof_checks("wrong")


def test_scram_verifier_uses_a_fresh_salt_each_time() -> None:
    first, second = scram_verifier("same"), scram_verifier("same")
    assert first != second
    assert first.split("$")[1].split(":")[1] != second.split("$")[1].split(":")[1]
    assert first.startswith("SCRAM-SHA-256$4096:")  # PostgreSQL's default iteration count


# --- replication slots ----------------------------------------------------------------------

SLOT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@pytest.mark.parametrize(
    "name", ["db-replica", "My Replica", "ro", "x" * 100, "réplica", "DB.Replica-1", "1st", ""]
)
def test_replication_slot_is_a_lowercase_identifier(name: str) -> None:
    slot = replication_slot(name)
    assert SLOT.fullmatch(slot), slot
    assert slot == replication_slot(name)  # stable: the replica's slot on its primary


@pytest.mark.parametrize(
    "names",
    [
        ("replica", "Replica", "REPLICA"),
        ("db-replica", "db_replica", "db.replica", "db replica"),
        ("a" * 40 + "x", "a" * 40 + "y"),  # equal in the first 40 characters
    ],
)
def test_replication_slots_of_similar_names_differ(names: tuple[str, ...]) -> None:
    slots = [replication_slot(n) for n in names]
    assert len(set(slots)) == len(names), slots


# --- layout ---------------------------------------------------------------------------------


def datastore(directory: str) -> Datastore:
    return Datastore(
        name="db", kind="postgres", spec=DatastoreSpec("db", "postgres", database_name="db",
        user="db_user"), version="16", port=5433, dir=directory,
        status=DatastoreStatus.AVAILABLE, reason="", pid=None, start_time=None,
        blueprint_path="render.yaml", origin="blueprint", restarts=0, created_at=0.0,
        updated_at=0.0, started_at=None,
    )  # fmt: skip


def test_layout_of_a_short_path() -> None:
    where = layout(datastore("/srv/shipyard/data/db"))
    assert where.dir == Path("/srv/shipyard/data/db")
    assert where.pgdata == Path("/srv/shipyard/data/db/pgdata")
    assert where.socket_dir == Path("/srv/shipyard/data/db/run")


def test_layout_socket_dir_at_the_limit_stays_under_the_data_dir() -> None:
    base = "/" + "d" * (SOCKET_PATH_MAX - len("/run") - 1)
    assert len(base + "/run") == SOCKET_PATH_MAX
    assert layout(datastore(base)).socket_dir == Path(base) / "run"
    # the socket file itself then just fits the 108 bytes of sun_path (with its NUL)
    assert len(f"{base}/run/.s.PGSQL.65535".encode()) + 1 <= 108


def test_layout_long_path_falls_back_to_a_short_socket_dir_under_tmp() -> None:
    long_a = "/home/someone/" + "deep/" * 20 + "shipyard/data/a"
    long_b = "/home/someone/" + "deep/" * 20 + "shipyard/data/b"
    a, b = layout(datastore(long_a)), layout(datastore(long_b))
    assert re.fullmatch(r"/tmp/shipyard-pg-[0-9a-f]{12}", str(a.socket_dir))
    digest = hashlib.sha256(long_a.encode()).hexdigest()[:12]
    assert a.socket_dir == Path(f"/tmp/shipyard-pg-{digest}")
    assert a.socket_dir != b.socket_dir  # two databases never share a socket directory
    assert a.socket_dir == layout(datastore(long_a)).socket_dir  # stable across starts
    assert a.pgdata == Path(long_a) / "pgdata"  # only the socket moves


def test_layout_counts_the_socket_path_in_bytes() -> None:
    base = "/home/" + "ö" * 60 + "/data/db"  # 74 characters, 134 bytes
    socket_dir = layout(datastore(base)).socket_dir
    assert len(str(socket_dir).encode()) <= SOCKET_PATH_MAX
