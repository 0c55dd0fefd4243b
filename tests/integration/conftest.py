from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Project, Shipyard


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(path).exists():
        pytest.fail("HAProxy is not installed: run `make install` (scripts/install-system.sh)")
    return path


@pytest.fixture(scope="module")
def shipyard(tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Shipyard]:
    """One daemon per test module (each test uses its own service names)."""
    sy = Shipyard(tmp_path_factory.mktemp("home"))
    sy.up()
    try:
        yield sy
    finally:
        sy.down()


@pytest.fixture
def own_shipyard(tmp_path: Path, haproxy_bin: str) -> Iterator[Shipyard]:
    """A daemon of the test's own (for tests that kill or restart it)."""
    sy = Shipyard(tmp_path / "home")
    sy.up()
    try:
        yield sy
    finally:
        sy.down()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "repo")
