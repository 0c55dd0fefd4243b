"""The demo stack (`make demo`: examples/render.yaml) against a real daemon: a web page, a
private API counting in PostgreSQL, a worker draining a Redis queue; the count survives a
redeploy."""

from __future__ import annotations

import json

from tests.integration.test_deploy import deploy
from tests.support.harness import REPO, Shipyard, wait_for


def test_the_demo_stack_uses_its_database_and_queue(own_shipyard: Shipyard) -> None:
    sy = own_shipyard
    blueprint = REPO / "examples" / "render.yaml"
    deploy(sy, blueprint)
    counts = []
    for _ in range(3):
        status, body = sy.get("hello-web.localhost", "/")
        assert status == 200, body
        counts.append(int(body.split('<p class="count">')[1].split("</p>")[0]))
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    listed = {d["name"]: d["kind"] for d in json.loads(sy.ok("db", "list", "--json").out)}
    assert listed == {"hello-db": "postgres", "hello-cache": "keyvalue"}
    assert wait_for(
        lambda: "processed visit" in sy.ok("logs", "hello-worker", "-n", "50").out, timeout=20
    )
    stored = sy.ok("psql", "hello-db", "--", "-AtXc", "SELECT count FROM visits").out.strip()
    assert int(stored) == counts[-1]
    deploy(sy, blueprint)  # a redeploy: the counter lives in the database, not the process
    status, body = sy.get("hello-web.localhost", "/")
    assert status == 200 and f'<p class="count">{counts[-1] + 1}</p>' in body
