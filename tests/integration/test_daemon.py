"""Instances and HAProxy outlive the daemon; a new daemon re-adopts them; down/up round trip."""

from __future__ import annotations

import os
from pathlib import Path

from tests.integration.test_deploy import deploy, web
from tests.support.harness import Project, Shipyard, load, wait_for


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def haproxy_pid(sy: Shipyard) -> int:
    return int((sy.home / "haproxy" / "haproxy.pid").read_text().split()[0])


def test_kill_daemon_keeps_serving_and_readopts(own_shipyard: Shipyard, project: Project) -> None:
    sy = own_shipyard
    bp = project.blueprint("services:\n" + web("keep", "v1") + web("keep2", "v1", app="nodeweb"))
    deploy(sy, bp)
    pids = {i["id"]: i["pid"] for i in sy.service("keep")["instances"]}
    proxy_pid = haproxy_pid(sy)
    with load(sy.http_port, "keep.localhost") as result:
        sy.kill_daemon()
        killed_at = result.sent
        down = sy.cli("ps")
        assert down.code == 7 and "not reachable" in down.err
        wait_for(lambda: result.sent > killed_at + 200)  # served while no daemon runs
        sent_while_down = result.sent - killed_at
        sy.up()
        back_at = result.sent
        wait_for(lambda: result.sent > back_at + 50)  # and on after the new daemon adopted
    assert sent_while_down > 20 and result.failed == 0, result.errors[:5]
    svc = sy.service("keep")
    assert {i["id"]: i["pid"] for i in svc["instances"]} == pids  # same processes, not restarted
    assert svc["status"] == "live" and haproxy_pid(sy) == proxy_pid
    # and the re-adopted daemon can still deploy
    project.blueprint("services:\n" + web("keep", "v2") + web("keep2", "v1", app="nodeweb"))
    deploy(sy, bp, "--service", "keep")
    assert sy.get_json("keep")["version"] == "v2"
    assert all(not alive(p) for p in pids.values())


def test_down_stops_everything_and_up_restores(own_shipyard: Shipyard, project: Project) -> None:
    sy = own_shipyard
    bp = project.blueprint("services:\n" + web("cycle", "v1"))
    deploy(sy, bp)
    pids = [i["pid"] for i in sy.service("cycle")["instances"]]
    proxy_pid = haproxy_pid(sy)
    sy.ok("down")
    wait_for(lambda: not any(alive(p) for p in [*pids, proxy_pid]), timeout=10)
    sy.up()
    wait_for(lambda: sy.service("cycle")["status"] == "live")
    assert sy.get_json("cycle")["version"] == "v1"
    # down while the daemon is dead still stops what it started
    pids = [i["pid"] for i in sy.service("cycle")["instances"]] + [haproxy_pid(sy)]
    sy.kill_daemon()
    result = sy.ok("down")
    assert "Daemon was not running" in result.out
    assert not any(alive(p) for p in pids)


def processes_of(service: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RENDER_SERVICE_NAME={service}".encode() in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_down_during_a_deploy_leaves_no_process_behind(
    own_shipyard: Shipyard, project: Project
) -> None:
    sy = own_shipyard
    slow = web("racer", "v1", extra_env='      - key: BOOT_DELAY\n        value: "2"\n')
    bp = project.blueprint("services:\n" + slow)
    deploy(sy, bp)
    project.blueprint("services:\n" + slow.replace("value: v1", "value: v2"))
    sy.ok("deploy", "-f", str(bp))  # no --wait: still starting release 2 when down arrives
    wait_for(lambda: any(i["release"] == 2 for i in sy.service("racer")["instances"]))
    refused = sy.cli("scale", "racer=3")
    sy.ok("down")
    assert processes_of("racer") == []
    assert refused.code == 5  # the deploy held the service
