"""Deploy, route, redeploy under load, and every way a deploy can fail (old release keeps
serving, no request reaches the failed instance)."""

from __future__ import annotations

import json
from pathlib import Path

from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge, runtime
from tests.support.harness import Project, Shipyard, load


def web(
    name: str,
    version: str,
    *,
    app: str = "pyweb",
    extra_env: str = "",
    extra: str = "",
    instances: int = 2,
) -> str:
    start = "python3 app.py" if app == "pyweb" else "node server.js"
    return f"""
  - type: web
    name: {name}
    runtime: {"python" if app == "pyweb" else "node"}
    rootDir: {app}
    buildCommand: echo "building {name} {version}"
    startCommand: {start}
    healthCheckPath: /healthz
    numInstances: {instances}
    maxShutdownDelaySeconds: 5
{extra}    envVars:
      - key: VERSION
        value: {version}
{extra_env}"""


def deploy(sy: Shipyard, path: Path, *args: str) -> str:
    return sy.ok("deploy", "-f", str(path), "--wait", *args).text


def test_deploy_web_pserv_worker_routes_and_env(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + web(
            "alpha",
            "v1",
            extra_env="""\
      - key: API
        fromService: {type: pserv, name: alpha-api, property: hostport}
      - key: SECRET
        generateValue: true
""",
            extra="    domains: [alpha.example.test]\n",
        )
        + """
  - type: pserv
    name: alpha-api
    runtime: node
    rootDir: nodeweb
    startCommand: node server.js
    envVars:
      - key: VERSION
        value: api-v1
  - type: worker
    name: alpha-worker
    runtime: python
    rootDir: worker
    startCommand: python3 worker.py
"""
    )
    out = deploy(shipyard, bp)
    assert "alpha: http://alpha.localhost:" in out
    body = shipyard.get_json("alpha")
    assert body["version"] == "v1" and body["service"] == "alpha"
    # the custom domain routes to the same service
    status, text = shipyard.get("alpha.example.test")
    assert status == 200 and json.loads(text)["service"] == "alpha"
    # the web reaches the private service through its fromService hostport
    status, hostport = shipyard.get("alpha.localhost", "/env?key=API")
    assert status == 200 and hostport.startswith("127.0.0.1:")
    status, proxied = shipyard.get("alpha.localhost", f"/proxy?url=http://{hostport}/")
    assert status == 200 and json.loads(proxied)["version"] == "api-v1"
    # ... but the private service is not reachable from the public listener, by any Host
    for host in ("alpha-api.localhost", "alpha-api", hostport):
        status, text = shipyard.get(host)
        assert status == 404, (host, status, text)
    # platform env
    status, ext = shipyard.get("alpha.localhost", "/env?key=RENDER_EXTERNAL_URL")
    assert ext == f"http://alpha.localhost:{shipyard.http_port}"
    status, render = shipyard.get("alpha.localhost", "/env?key=RENDER")
    assert render == "true"
    status, secret = shipyard.get("alpha.localhost", "/env?key=SECRET")
    assert status == 200 and len(secret) == 44
    worker = shipyard.service("alpha-worker")
    assert worker["status"] == "live" and worker["running_instances"] == 1
    # the secret is stable across deploys, and never in API output or the state file
    deploy(shipyard, bp)
    assert shipyard.get("alpha.localhost", "/env?key=SECRET")[1] == secret
    with shipyard.client() as c:
        dumped = json.dumps(
            [m.model_dump(mode="json") for m in [*c.services(), *c.releases("alpha")]]
        )
    assert secret not in dumped and "SECRET" in dumped
    assert secret.encode() not in (shipyard.home / "state.db").read_bytes()


def test_redeploy_under_load_drops_nothing(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint(
        "services:\n"
        + web(
            "beta",
            "v1",
            extra_env="""\
      - key: BOOT_DELAY
        value: "1"
""",
        )
    )
    deploy(shipyard, bp)
    with load(shipyard.http_port, "beta.localhost") as result:
        for version in ("v2", "v3"):
            project.blueprint(
                "services:\n"
                + web(
                    "beta",
                    version,
                    extra_env="""\
      - key: BOOT_DELAY
        value: "1"
""",
                )
            )
            deploy(shipyard, bp)
    assert result.sent > 50
    assert result.failed == 0, result.errors[:5]
    assert shipyard.get_json("beta")["version"] == "v3"
    releases = shipyard.client().releases("beta")
    assert [r.status for r in releases] == ["live", "superseded", "superseded"]


def test_slow_requests_finish_before_old_instances_stop(
    shipyard: Shipyard, project: Project
) -> None:
    """The app exits at once on SIGTERM: only the drain protects in-flight requests."""
    bp = project.blueprint("services:\n" + web("gamma", "v1", app="nodeweb"))
    deploy(shipyard, bp)
    with load(shipyard.http_port, "gamma.localhost", "/sleep?ms=400", workers=6) as result:
        project.blueprint("services:\n" + web("gamma", "v2", app="nodeweb"))
        deploy(shipyard, bp)
    assert result.sent > 10
    assert result.failed == 0, result.errors[:5]


def assert_still_serves(sy: Shipyard, name: str, version: str) -> None:
    assert sy.get_json(name)["version"] == version
    svc = sy.service(name)
    assert svc["status"] == "live", svc
    assert all(i["release"] == svc["current_release"] for i in svc["instances"])


def test_bad_build_keeps_current_release(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("delta", "v1"))
    deploy(shipyard, bp)
    project.blueprint(
        "services:\n"
        + web("delta", "v2").replace('echo "building delta v2"', 'echo "compiling..." && exit 7')
    )
    result = shipyard.cli("deploy", "-f", str(bp), "--wait")
    assert result.code == 10, result.text  # BuildFailed keeps its exit code through the operation
    assert "build command exited with code 7" in result.text
    assert "compiling..." in result.text
    assert_still_serves(shipyard, "delta", "v1")
    releases = shipyard.client().releases("delta")
    assert releases[0].status == "build-failed" and releases[1].current
    build_log = shipyard.ok("logs", "delta", "--build").out
    assert "compiling..." in build_log


def test_crash_on_start_fails_deploy_with_reason(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("eps", "v1"))
    deploy(shipyard, bp)
    project.blueprint(
        "services:\n"
        + web(
            "eps",
            "v2",
            extra_env="""\
      - key: CRASH_ON_START
        value: "1"
""",
        )
    )
    result = shipyard.cli("deploy", "-f", str(bp), "--wait")
    assert result.code == 11, result.text  # DeployFailed
    assert "exited with code 3 before becoming healthy" in result.text
    assert "CRASH_ON_START" in result.text  # the app's own last log line is shown
    assert_still_serves(shipyard, "eps", "v1")


def test_never_healthy_fails_and_gets_no_traffic(shipyard: Shipyard, project: Project) -> None:
    bp = project.blueprint("services:\n" + web("zeta", "v1"), name="shipyard.yaml")
    deploy(shipyard, bp)
    with load(shipyard.http_port, "zeta.localhost") as result:
        project.blueprint(
            "services:\n"
            + web(
                "zeta",
                "v2",
                extra="""\
    healthCheckTimeoutSeconds: 3
""",
                extra_env="""\
      - key: HEALTH_STATUS
        value: "503"
""",
            ),
            name="shipyard.yaml",
        )
        out = shipyard.cli("deploy", "-f", str(bp), "--wait")
    assert out.code == 11 and "did not become healthy within 3 s" in out.text
    assert "HTTP 503" in out.text
    assert result.failed == 0 and set(result.versions) == {"v1"}, result
    assert_still_serves(shipyard, "zeta", "v1")
    failed = [r for r in shipyard.client().releases("zeta") if r.status == "failed"]
    assert len(failed) == 1


def test_failed_deploy_does_not_change_the_live_config(
    shipyard: Shipyard, project: Project
) -> None:
    """A new healthCheckPath/domain that never went live must not be routed or health-checked."""
    bp = project.blueprint("services:\n" + web("theta", "v1", instances=1))
    deploy(shipyard, bp)
    broken = (
        web("theta", "v2", instances=1, extra="    domains: [theta.example.test]\n")
        .replace("healthCheckPath: /healthz", "healthCheckPath: /nothere")
        .replace('echo "building theta v2"', "exit 1")
    )
    project.blueprint("services:\n" + broken)
    assert shipyard.cli("deploy", "-f", str(bp), "--wait").code != 0
    plan = json.loads(shipyard.ok("plan", "-f", str(bp), "--json").out)
    assert {"healthCheckPath", "domains"} <= set(plan["steps"][0]["changes"])
    assert shipyard.get("theta.example.test")[0] == 404  # the new domain is not routed
    # an unrelated routing change (another service's scale) re-applies the table
    other = project.blueprint("services:\n" + web("iota", "v1", instances=1), name="other.yaml")
    deploy(shipyard, other)
    shipyard.ok("scale", "iota=2")
    # HAProxy itself still checks theta's live path, not the failed release's /nothere
    edge = HAProxyEdge(EdgeOptions(dir=shipyard.home / "haproxy"))
    health = runtime.show_map(edge.admin, edge.opts.map_path("health"))
    assert health[edge.layout().slots["theta"]] == "/healthz"
    assert shipyard.get_json("theta")["version"] == "v1"
    assert shipyard.service("theta")["desired_instances"] == 1


def test_routes_the_edge_cannot_serve_are_refused_before_anything_changes(
    shipyard: Shipyard, project: Project
) -> None:
    mine = "    domains: [kappa.example.test]\n"
    bp = project.blueprint("services:\n" + web("kappa", "v1", instances=1, extra=mine))
    deploy(shipyard, bp)
    before = shipyard.client().services()
    # Another Blueprint claims kappa's domain: no one file shows the clash, the edge check does.
    clash = project.blueprint(
        "services:\n" + web("lam", "v1", instances=1, extra=mine), name="clash.yaml"
    )
    result = shipyard.cli("deploy", "-f", str(clash), "--wait")
    assert result.code == 2, result.text
    assert "the edge cannot route this Blueprint" in result.err
    assert "kappa.example.test" in result.err
    assert "the edge cannot route" in shipyard.ok("plan", "-f", str(clash)).out
    assert shipyard.client().services() == before
    assert shipyard.get_json("kappa")["version"] == "v1"
