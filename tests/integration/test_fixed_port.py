"""Apps that ignore $PORT and listen on a fixed port: routed to the port they opened, redeployed
by the recreate rollout (the old instance is drained and stopped first, requests wait in
HAProxy meanwhile), refused clearly when scaled beyond one instance."""

from __future__ import annotations

import pytest

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, free_port, load

pytestmark = pytest.mark.integration


def fixed(name: str, version: str, port: int) -> str:
    return web(
        name, version, instances=1, extra_env=f"""\
      - key: FIXED_PORT
        value: "{port}"
      - key: EXIT_ON_SIGTERM
        value: "0"
""",
    )  # fmt: skip


def test_fixed_port_app_redeploys_and_rolls_back(shipyard: Shipyard, project: Project) -> None:
    port = free_port()
    bp = project.blueprint("services:\n" + fixed("fixie", "v1", port))
    first = deploy(shipyard, bp)
    assert "ignores $PORT" in first and f"listens on {port}" in first
    assert shipyard.get_json("fixie")["version"] == "v1"
    with load(shipyard.http_port, "fixie.localhost") as result:
        project.blueprint("services:\n" + fixed("fixie", "v2", port))
        second = deploy(shipyard, bp)
    assert "recreate rollout" in second, second
    assert shipyard.get_json("fixie")["version"] == "v2"
    # the gap between the old instance and the new one is held in HAProxy, not failed
    assert result.failed == 0 and result.sent > 0, (result.failed, result.errors[:5])
    assert set(result.versions) == {"v1", "v2"}
    shipyard.ok("rollback", "fixie")
    assert shipyard.get_json("fixie")["version"] == "v1"
    scaled = shipyard.cli("scale", "fixie=2")
    assert scaled.code == 5 and f"listens on port {port}" in scaled.err, scaled.text
    assert shipyard.service("fixie")["desired_instances"] == 1
