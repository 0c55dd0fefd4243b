"""Settings from the environment: bad values are refused with the variable's name."""

from __future__ import annotations

import pytest

from shipyard.errors import UsageError
from shipyard.settings import Settings


def settings(**env: str) -> Settings:
    return Settings.from_env({"SHIPYARD_HOME": "/tmp/shipyard-test-home", "PATH": "/bin", **env})


def test_defaults() -> None:
    cfg = settings()
    assert (cfg.http_port, cfg.api_port, cfg.internal_port_base) == (8080, 8787, 20000)
    assert cfg.deploy_concurrency == 4


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"SHIPYARD_HTTP_PORT": "eighty"}, "SHIPYARD_HTTP_PORT has value 'eighty'"),
        ({"SHIPYARD_API_PORT": "70000"}, "between 1 and 65535"),
        ({"SHIPYARD_HTTP_PORT": "20005"}, "inside the region of internal ports"),
        ({"SHIPYARD_INTERNAL_PORT_BASE": "32700"}, "Expected a port from 1024 to 32512"),
        ({"SHIPYARD_DEPLOY_CONCURRENCY": "0"}, "whole number from 1 to 64"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], text: str) -> None:
    with pytest.raises(UsageError, match=text):
        settings(**env)


def test_build_passthrough_never_passes_shipyard_settings() -> None:
    cfg = settings(
        SHIPYARD_BUILD_PASSTHROUGH="PIP_INDEX_URL, SHIPYARD_HOME",
        PIP_INDEX_URL="http://mirror/simple",
    )
    assert dict(cfg.host.passthrough) == {"PIP_INDEX_URL": "http://mirror/simple"}
