"""The data stage's pure-ish parts on a real state with fakes: directory names that are also
pgBackRest stanzas, interrupted restores not brought back as empty datastores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard.blueprint.spec import DatastoreSpec
from shipyard.data import lifecycle
from shipyard.data.supervise import bring_up
from shipyard.records import DatastoreStatus
from shipyard.testing import make_context

STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # pgBackRest's rule


@pytest.mark.parametrize(
    "name", ["appdb", "_app", "-x", ".hidden", "private cache", "x" * 100, "Ünïcode db", "a"]
)
def test_directory_names_are_valid_stanzas_and_distinct(tmp_path: Path, name: str) -> None:
    ctx = make_context(tmp_path)
    slug = lifecycle.directory(ctx, name).name
    assert STANZA.match(slug), slug
    assert lifecycle.directory(ctx, name + "2").name != slug


def test_a_name_whose_backups_are_kept_gets_another_directory(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    first = lifecycle.directory(ctx, "appdb")
    (ctx.settings.home / "backups" / "postgres" / first.name).mkdir(parents=True)
    second = lifecycle.directory(ctx, "appdb")
    assert second != first and second.name.startswith("appdb-")


def test_an_interrupted_restore_is_marked_failed_not_started(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    spec = DatastoreSpec(name="copy", kind="postgres", database_name="d", user="u")
    ctx.data.add_datastore(spec, "15", 15500, str(tmp_path / "data" / "copy"), "",
                           "restore of appdb (latest)", {})  # fmt: skip
    bring_up(ctx)  # no engine is wired: starting it would fail loudly
    ds = ctx.data.datastore("copy")
    assert ds.status == DatastoreStatus.FAILED
    assert "restore was interrupted" in ds.reason and "db delete" in ds.reason
