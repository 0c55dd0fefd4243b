"""Bounded input: Blueprint size, nesting and alias expansion are refused fast and in little
memory, with a message naming the limit; files that are not Blueprints are never quoted."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shipyard.blueprint import BlueprintLimits, load_blueprint, parse_blueprint
from shipyard.errors import BlueprintError, LimitExceeded, ShipyardError, UsageError

MIB = 1024 * 1024
OK = "services:\n  - {type: worker, name: w, runtime: go, startCommand: ./w}\n"


def refused(text: str, limits: BlueprintLimits | None = None) -> ShipyardError:
    """The error for ``text``: a limit breached is a LimitExceeded (exit code 2, like any
    input over a bound), anything else a BlueprintError."""
    with pytest.raises((BlueprintError, LimitExceeded)) as info:
        parse_blueprint(text, filename="render.yaml", kind="render", limits=limits or LIMITS)
    error = info.value
    assert isinstance(error, ShipyardError)
    if "limit" in error.fields:
        assert isinstance(error, LimitExceeded) and error.exit_code == 2
    return error


LIMITS = BlueprintLimits()


@contextmanager
def bounded(seconds: float = 1.0, megabytes: float = 50) -> Iterator[None]:
    """The block must finish within ``seconds`` and allocate at most ``megabytes`` at peak."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < megabytes * MIB, f"peak {peak / MIB:.1f} MiB"


# --- the limits themselves ------------------------------------------------------------------


def test_defaults_and_settings() -> None:
    assert BlueprintLimits() == BlueprintLimits(max_bytes=MIB, max_depth=64, max_nodes=100_000)
    env = {
        "SHIPYARD_BLUEPRINT_MAX_BYTES": "2097152",
        "SHIPYARD_BLUEPRINT_MAX_DEPTH": " 32 ",
        "SHIPYARD_BLUEPRINT_MAX_NODES": "",
    }
    assert BlueprintLimits.from_env(env) == BlueprintLimits(max_bytes=2 * MIB, max_depth=32)
    assert BlueprintLimits.from_env({}) == BlueprintLimits()


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("SHIPYARD_BLUEPRINT_MAX_BYTES", "1MiB", "Expected a whole number of at least 1."),
        ("SHIPYARD_BLUEPRINT_MAX_NODES", "0", "Expected a whole number of at least 1."),
        ("SHIPYARD_BLUEPRINT_MAX_NODES", "-5", "Expected a whole number of at least 1."),
        ("SHIPYARD_BLUEPRINT_MAX_DEPTH", "129", "Expected a whole number from 1 to 128."),
    ],
)
def test_a_bad_setting_names_the_variable(name: str, raw: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        BlueprintLimits.from_env({name: raw})
    assert info.value.message == f"{name} has value {raw!r}. {expected}"
    assert info.value.fields == {"setting": name, "value": raw}


def test_limits_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        BlueprintLimits(max_depth=1000)
    with pytest.raises(ValueError, match="max_bytes"):
        BlueprintLimits(max_bytes=0)


# --- size -----------------------------------------------------------------------------------


def test_a_20_mb_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "render.yaml"
    with path.open("wb") as file:
        file.truncate(20 * MIB)  # sparse: 20 MiB of NULs, nothing written
    with bounded(megabytes=5), pytest.raises(LimitExceeded) as info:  # reads 1 MiB + 1
        load_blueprint(path)
    assert info.value.message == (
        "render.yaml: 20.0 MiB is over the Blueprint size limit of 1 MiB "
        "(raise it with SHIPYARD_BLUEPRINT_MAX_BYTES)"
    )
    assert info.value.code == "limit_exceeded" and info.value.exit_code == 2
    fields = info.value.fields
    assert (fields["limit"], fields["value"], fields["setting"]) == (
        MIB,
        20 * MIB,
        "SHIPYARD_BLUEPRINT_MAX_BYTES",
    )


def test_a_20_mb_text_is_refused_before_it_is_parsed() -> None:
    text = "#" * (20 * 1000 * 1000)
    with bounded():
        error = refused(text)
    assert error.message.startswith("render.yaml: 19.1 MiB is over the Blueprint size limit")


def test_size_is_counted_in_bytes_up_to_the_limit() -> None:
    limits = BlueprintLimits(max_bytes=len(OK.encode()))
    assert parse_blueprint(OK, filename="render.yaml", kind="render", limits=limits).services
    error = refused(OK.replace("./w", "./é"), limits)  # one character more: two bytes
    assert error.message == (
        f"render.yaml: {len(OK) + 1} bytes is over the Blueprint size limit of {len(OK)} "
        "bytes (raise it with SHIPYARD_BLUEPRINT_MAX_BYTES)"
    )


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "render.yaml"
    os.mkfifo(fifo)
    with bounded(), pytest.raises(BlueprintError, match="not a regular file"):
        load_blueprint(fifo)  # opened without blocking, and refused
    with pytest.raises(BlueprintError, match=r"cannot read .*: No such file or directory"):
        load_blueprint(tmp_path / "missing.yaml")


# --- nesting --------------------------------------------------------------------------------

DEEP = {
    "flow lists": "[" * 10_000 + "]" * 10_000,
    "flow mappings": "{a: " * 10_000 + "1" + "}" * 10_000,
    "flow lists in a Blueprint": "services: " + "[" * 10_000,
    "block lists": "services:\n" + "- " * 10_000 + "x\n",
    "block mappings": "services:\n" + "".join(" " * i + "a:\n" for i in range(1_000)),
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_refused_fast(text: str) -> None:
    with bounded():
        error = refused(text)
    assert "over the Blueprint nesting limit of 64 levels" in error.message
    assert error.message.endswith("(raise it with SHIPYARD_BLUEPRINT_MAX_DEPTH)")
    assert error.fields["setting"] == "SHIPYARD_BLUEPRINT_MAX_DEPTH"
    assert error.fields["limit"] == 64 and error.fields["value"] > 64


def test_nesting_message_and_its_limit() -> None:
    error = refused("services: " + "[" * 70 + "]" * 70 + "\n")
    assert error.message == (
        "render.yaml:1:74: nesting at least 65 levels deep is over the Blueprint nesting limit "
        "of 64 levels (raise it with SHIPYARD_BLUEPRINT_MAX_DEPTH)"
    )
    # 5 levels: the file, services, the service, envVars and its item
    nested = "services: [{type: worker, name: w, runtime: go, startCommand: x, envVars: [{}]}]"
    nested = nested.replace("{}", "{key: A, value: b}")
    limits = BlueprintLimits(max_depth=5)
    assert parse_blueprint(nested, filename="render.yaml", kind="render", limits=limits)
    assert "nesting at least 5 levels deep" in refused(nested, BlueprintLimits(max_depth=4)).message


def test_aliases_count_the_depth_of_what_they_name() -> None:
    # Each line is 2 levels deep as written, but nests the one before: a63 is 65 levels deep.
    text = "services: []\n" + "".join(
        f"a{i}: &a{i} [{f'*a{i - 1}' if i else 1}]\n" for i in range(64)
    )
    error = refused(text)
    assert error.message.startswith("render.yaml:65:12: nesting at least 65 levels deep")


# --- alias expansion ------------------------------------------------------------------------


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [{','.join(f'*{prev}' for _ in range(9))}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("prefix", ["", "services: []\n"], ids=["bare", "in a Blueprint"])
def test_the_billion_laughs_is_refused_fast(prefix: str) -> None:
    text = prefix + billion_laughs()
    assert len(billion_laughs()) < 400
    with bounded():
        error = refused(text)
    assert "YAML nodes with aliases expanded is over the Blueprint node limit of 100,000" in (
        error.message
    )
    assert error.message.endswith("(raise it with SHIPYARD_BLUEPRINT_MAX_NODES)")
    assert error.fields["limit"] == 100_000 and error.fields["value"] > 100_000


def test_node_limit_message_and_its_limit() -> None:
    # 13 nodes as written (the alias one of them), 15 with the alias expanded.
    text = "services: []\ndatabases: [&d {name: db}]\nungrouped: {databases: [*d]}\n"
    assert parse_blueprint(
        text, filename="render.yaml", kind="render", limits=BlueprintLimits(max_nodes=15)
    )
    error = refused(text, BlueprintLimits(max_nodes=14))
    assert error.message == (
        "render.yaml:3:25: at least 15 YAML nodes with aliases expanded is over the Blueprint "
        "node limit of 14 (raise it with SHIPYARD_BLUEPRINT_MAX_NODES)"
    )


def test_a_recursive_alias_is_refused() -> None:
    error = refused("services: &x [*x]\n")
    assert error.message == (
        "render.yaml:1:15: recursive alias: it names a node that contains it, so it expands "
        "without end"
    )


def test_a_big_flat_file_is_refused_while_it_is_read() -> None:
    text = "services:\n" + "- x\n" * 200_000  # 0.8 MB, 200,003 nodes
    start = time.perf_counter()
    error = refused(text)
    assert time.perf_counter() - start < 3  # composing the first 100,000 nodes: ~1 s
    assert error.fields["value"] == 100_001


# --- files that are not Blueprints ----------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
deploy:x:1000:1000:Deploy User,,,:/home/deploy:/bin/bash
"""
SHADOW = """\
root:$y$j9T$F5Jx1E3m0Pq/Ob9fHk0u0/$Wq3jvKq9bXqKq8xg0rmv2V0oTq3Yl8sP:19700:0:99999:7:::
deploy:$6$rounds=5000$salt$8Ck1Hbq8b1k7y8ZkQ0JzF/hunter2hash:19700:0:99999:7:::
"""
SECRETS = "password: hunter2\napi_token: 'tok_live_abc'\n"
BROKEN = "password: hunter2\ntoken: [tok_live_abc\n"
ODD = "key: [tok_live_abc, *b]\n"
NOT_BLUEPRINTS = {
    "passwd": (PASSWD, "found plain text"),
    "shadow": (SHADOW, "found a mapping without any of those keys"),  # "...:7:::" ends a key
    "yaml mapping": (SECRETS, "found a mapping without any of those keys"),
    "yaml list": ("- hunter2\n- tok_live_abc\n", "found a list"),
    "broken yaml": (BROKEN, "found text that is not YAML"),
    "undefined alias": (ODD, "found text that is not YAML"),
    "empty": ("", "found an empty file"),
}
EXPECTED = "expected a YAML mapping with 'services', 'databases' or 'envVarGroups' at the top"


@pytest.mark.parametrize(("text", "found"), NOT_BLUEPRINTS.values(), ids=NOT_BLUEPRINTS.keys())
def test_a_file_that_is_not_a_blueprint_is_not_quoted(text: str, found: str) -> None:
    error = refused(text)
    assert f"not a Blueprint ({EXPECTED}; {found})" in error.message
    assert_quotes_nothing(text, error)


def assert_quotes_nothing(text: str, error: ShipyardError) -> None:
    shown = error.message + json.dumps(error.fields)
    words = {w for line in text.splitlines() for w in line.replace(":", " ").split()}
    leaked = {w for w in words if len(w) > 3 and w in shown} - set(EXPECTED.split())
    assert not leaked, leaked


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(bytes(range(256)) * 4),
        lambda path: path.write_bytes(b"\x7fELF\x02\x01\x01\x00secret-symbol\x00\x00"),
        lambda path: path.write_text(PASSWD),
        lambda path: path.write_text(SHADOW),
    ],
    ids=["bytes", "elf", "passwd", "shadow"],
)
def test_loading_a_file_that_is_not_a_blueprint(
    tmp_path: Path, write: Callable[[Path], object]
) -> None:
    path = tmp_path / "passwd"
    write(path)
    with pytest.raises(BlueprintError) as info:
        load_blueprint(path)
    message = info.value.message
    assert message.startswith("passwd")
    assert any(
        reason in message
        for reason in ("not a Blueprint (", "not UTF-8 text", "not YAML text: a control character")
    ), message
    text = path.read_bytes().decode(errors="replace")
    assert_quotes_nothing(text, info.value)
    assert "secret-symbol" not in message + json.dumps(info.value.fields)


def test_where_a_binary_file_stops_being_text(tmp_path: Path) -> None:
    path = tmp_path / "render.yaml"
    path.write_bytes(b"services: []\nname: caf\xc3\xa9 \xff\n")
    with pytest.raises(BlueprintError) as info:
        load_blueprint(path)
    assert info.value.message == (
        "render.yaml:2:12: not UTF-8 text (a Blueprint is UTF-8 YAML text)"
    )
    path.write_text("services: []\nname: \x00\n")
    with pytest.raises(BlueprintError) as info:
        load_blueprint(path)
    assert info.value.message.startswith("render.yaml:2:7: not YAML text: a control character")


def test_a_broken_blueprint_is_still_quoted() -> None:
    # Recognisably a Blueprint (its first key), so the YAML problem is reported in full.
    error = refused("services:\n  - name: a\n    type: [web\n")
    assert "YAML syntax error: while parsing a flow sequence" in error.message
    assert error.message.startswith("render.yaml: 1 problem:\nrender.yaml:4:1: ")
