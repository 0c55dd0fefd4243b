"""A Blueprint with 60 web services (and a private one) routed end to end through the daemon,
and adding a service afterwards costs HAProxy no reload."""

from __future__ import annotations

import json

import pytest

from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge
from tests.support.harness import Project, Shipyard

pytestmark = pytest.mark.integration

COUNT = 60


def web(name: str) -> str:
    return f"""
  - type: web
    name: {name}
    runtime: python
    rootDir: pyweb
    startCommand: python3 app.py
    healthCheckPath: /healthz
    envVars:
      - key: VERSION
        value: {name}
"""


def reloads(sy: Shipyard) -> int:
    return HAProxyEdge(EdgeOptions(dir=sy.home / "haproxy")).reloads()


def test_sixty_services_route_and_a_new_one_needs_no_reload(
    shipyard: Shipyard, project: Project
) -> None:
    names = [f"many{i:02d}" for i in range(COUNT)]
    private = """
  - type: pserv
    name: manypriv
    runtime: python
    rootDir: pyweb
    startCommand: python3 app.py
"""
    bp = project.blueprint("services:\n" + "".join(web(n) for n in names) + private)
    shipyard.ok("deploy", "-f", str(bp), "--wait", timeout=600)
    for name in names:
        status, body = shipyard.get(f"{name}.localhost")
        assert status == 200, (name, status, body[:200])
        assert json.loads(body)["service"] == name
    # the private service is reachable on its internal address only
    hostport = shipyard.service("manypriv")["internal_hostport"]
    status, body = shipyard.get(f"{names[0]}.localhost", f"/proxy?url=http://{hostport}/")
    assert status == 200 and json.loads(body)["service"] == "manypriv", body[:200]
    assert shipyard.get("manypriv.localhost")[0] == 404
    before = reloads(shipyard)
    extra = project.blueprint("services:\n" + web("manynew"), name="extra.yaml")
    shipyard.ok("deploy", "-f", str(extra), "--wait")
    assert shipyard.get_json("manynew")["service"] == "manynew"
    assert reloads(shipyard) == before, "adding a service reloaded HAProxy"
