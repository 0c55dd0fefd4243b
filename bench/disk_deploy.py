"""Deploy a web service with a disk N times under continuous load: failed requests, the pause.

One Shipyard (tests/support/harness.py) runs two services of tests/apps/pyweb, each from its
own Blueprint, each with ``numInstances: 1``, a 2 s boot (``BOOT_DELAY``) and a graceful stop
on SIGTERM (``EXIT_ON_SIGTERM=0``: in-flight requests finish):

- ``disk``: with ``disk: {name: data, mountPath: /srv/shipyard-bench-<random>, sizeGB: 1}``, so
  Shipyard deploys it with the ``recreate`` rollout (drain and stop the old instance, then
  start the new one; HAProxy holds the requests that arrive meanwhile);
- ``no-disk``: the same service without the disk, deployed with the ``surge`` rollout (the new
  instance starts beside the old one), as the comparison.

Deploys alternate between the two (disk, no-disk, disk, ...), N of each (default 5): each
``shipyard deploy -f ... --wait`` changes VERSION and runs inside its own load window (the
harness ``load(...)``: ``--workers`` keep-alive clients sending ``GET /`` through the edge as
fast as they can, from 1 s before the deploy to 1 s after it). Per deploy: requests sent and
failed (any non-200 or connection error; target 0), the slowest request (the pause a client
saw), the deploy's duration, the rollout Shipyard chose, and that the new version served. A
window of the same load with no deploy gives each service's slowest request at rest. A file
written on the disk before the first deploy must still be there after the last.

    nice -n 10 .venv/bin/python bench/disk_deploy.py [--deploys 5] [--workers 4]

The mount point (an empty directory left on the host) is removed at the end. Prints JSON, then
one summary line per service.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Project, Shipyard, leftovers, load, shut_down, wait_for

BOOT_DELAY_S = 2
SERVICES = {"disk": "withdisk", "no-disk": "nodisk"}  # row -> service name

SERVICE = """
services:
  - type: web
    name: {name}
    runtime: python
    rootDir: pyweb
    buildCommand: echo "building {name} {version}"
    startCommand: python3 app.py
    healthCheckPath: /healthz
    numInstances: 1
    maxShutdownDelaySeconds: 5
{disk}    envVars:
      - {{key: VERSION, value: "{version}"}}
      - {{key: BOOT_DELAY, value: "{boot}"}}
      - {{key: EXIT_ON_SIGTERM, value: "0"}}
"""


def log(msg: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:7.1f}s] " if started is not None else ""
    print(f"disk_deploy: {stamp}{msg}", file=sys.stderr, flush=True)


def blueprint(row: str, version: str, mount: str) -> str:
    disk = f"    disk: {{name: data, mountPath: {mount}, sizeGB: 1}}\n" if row == "disk" else ""
    return SERVICE.format(name=SERVICES[row], version=version, disk=disk, boot=BOOT_DELAY_S)


def window(
    sy: Shipyard, row: str, workers: int, action: Callable[[], str] | None = None
) -> tuple[dict[str, Any], float | None, str]:
    """Load on ``row``'s service from 1 s before ``action`` (a callable, or nothing: a window
    at rest of 5 s) to 1 s after it: the load's figures, the action's seconds, its output."""
    host = f"{SERVICES[row]}.localhost"
    seconds, text = None, ""
    with load(sy.http_port, host, workers=workers, pace_s=0) as result:
        time.sleep(1)
        if action is None:
            time.sleep(3)
        else:
            t0 = time.monotonic()
            text = action()
            seconds = time.monotonic() - t0
        time.sleep(1)
    figures = {
        "requests_sent": result.sent,
        "requests_failed": result.failed,
        "failure_samples": result.errors[:5],
        "max_latency_s": round(result.max_latency_s, 3),
        "versions_served": dict(result.versions),
    }
    return figures, seconds, text


def disk_file(sy: Shipyard, mount: str, write: str | None = None) -> tuple[int, str]:
    query = f"/file?path={quote(mount + '/kept.txt')}"
    if write is not None:
        query += f"&write={quote(write)}"
    return sy.get(f"{SERVICES['disk']}.localhost", query)


def stats(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mounts") as handle:
        points = [line.split()[1] for line in handle]
    return [p for p in points if p.startswith(path)]


def run(deploys: int, workers: int, deploy_timeout: float) -> dict[str, Any]:
    mount = f"/srv/shipyard-bench-{secrets.token_hex(4)}"
    result: dict[str, Any] = {"mount_path": mount}
    rows: dict[str, dict[str, Any]] = {row: {"deploys": []} for row in SERVICES}
    result["rows"] = rows
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-", dir="/tmp") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        project = Project.create(Path(tmp) / "repo")
        paths = {row: project.root / f"render-{row}.yaml" for row in SERVICES}

        def write(row: str, version: str) -> None:
            paths[row].write_text(blueprint(row, version, mount).lstrip())

        try:
            sy.up()
            for row in SERVICES:
                write(row, "v0")
                sy.ok("deploy", "-f", str(paths[row]), "--wait", timeout=deploy_timeout)
            assert disk_file(sy, mount, "written by v0") == (200, "written by v0")
            log("both services serve v0; windows at rest", started)
            for row in SERVICES:
                rows[row]["at_rest"] = window(sy, row, workers)[0]
            for n in range(1, deploys + 1):
                for row in SERVICES:
                    version = f"v{n}"
                    write(row, version)

                    def deploy(row: str = row) -> str:
                        args = ("deploy", "-f", str(paths[row]), "--wait")
                        return sy.ok(*args, timeout=deploy_timeout).text

                    figures, seconds, text = window(sy, row, workers, deploy)
                    served = figures["versions_served"].get(version, 0) > 0
                    entry = {
                        "deploy": n,
                        "deploy_seconds": round(seconds or 0, 2),
                        "rollout": "recreate" if "recreate rollout" in text else "surge",
                        "new_version_served": served,
                        **figures,
                    }
                    rows[row]["deploys"].append(entry)
                    log(
                        f"{row} deploy {n}: {entry['deploy_seconds']} s ({entry['rollout']}), "
                        f"{figures['requests_failed']}/{figures['requests_sent']} failed, "
                        f"slowest {figures['max_latency_s']} s",
                        started,
                    )
            result["disk_file_after_last_deploy"] = disk_file(sy, mount)[1]
            for row, data in rows.items():
                done = data["deploys"]
                data["service"] = SERVICES[row]
                data["rollouts"] = sorted({d["rollout"] for d in done})
                data["requests_sent"] = sum(d["requests_sent"] for d in done)
                data["requests_failed"] = sum(d["requests_failed"] for d in done)
                data["max_latency_s"] = stats([d["max_latency_s"] for d in done])
                data["deploy_s"] = stats([d["deploy_seconds"] for d in done])
                data["final_version"] = sy.get_json(SERVICES[row])["version"]
                data["ok"] = (
                    data["requests_failed"] == 0
                    and all(d["new_version_served"] for d in done)
                    and data["final_version"] == f"v{deploys}"
                )
            if result["disk_file_after_last_deploy"] != "written by v0":
                result["error"] = "the file written on the disk before the deploys is gone"
            elif not all(data["ok"] for data in rows.values()):
                result["error"] = "failed requests, or a version not served"
        except Exception as exc:
            result.setdefault("error", f"{type(exc).__name__}: {exc}")
            log(f"failed: {type(exc).__name__}: {exc}")
        finally:
            log("shipyard down", started)

            def settle() -> None:  # log writers exit once their instance's output closes
                t0 = time.monotonic()
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: not leftovers(tmp), timeout=15)
                result["settle_seconds"] = round(time.monotonic() - t0, 1)

            shut_down(sy, tmp, result, settle=settle)
            left = mounts_under(tmp)
            result["mounts_left_after_down"] = left
            for point in reversed(left):  # this run's own disk: so its directory can go
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
            with contextlib.suppress(OSError):
                os.rmdir(mount)  # the empty mount point on the host, never its contents
            result["mount_point_removed"] = not os.path.exists(mount)
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--deploys", type=int, default=5, help="deploys of each service")
    parser.add_argument("--workers", type=int, default=4, help="keep-alive load workers")
    parser.add_argument("--deploy-timeout", type=float, default=300, help="seconds per deploy")
    args = parser.parse_args()
    if args.deploys < 1 or args.workers < 1:
        parser.error("--deploys and --workers must be at least 1")
    if os.geteuid() != 0:
        parser.error("disks are loop-mounted as root: run as root")
    result = run(args.deploys, args.workers, args.deploy_timeout)
    report = {
        "benchmark": "disk_deploy",
        "app": f"tests/apps/pyweb, 1 instance, {BOOT_DELAY_S} s boot, graceful on SIGTERM",
        "cpus": psutil.cpu_count(),
        "load_workers": args.workers,
        **result,
    }
    print(json.dumps(report, indent=2))
    problems = [
        result.get("error"),
        "processes left after down" if result.get("processes_left_after_down") else None,
        "mounts left after down" if result.get("mounts_left_after_down") else None,
        None if result.get("mount_point_removed") else f"{result['mount_path']} left",
    ]
    if any(problems):
        print(f"disk_deploy: FAILED: {'; '.join(p for p in problems if p)}")
        return 1
    for row, data in result["rows"].items():
        print(
            f"disk_deploy[{row}]: {len(data['deploys'])} deploys ({'/'.join(data['rollouts'])}), "
            f"{data['requests_sent']} requests, {data['requests_failed']} failed, slowest "
            f"request median {data['max_latency_s']['median']} s (max "
            f"{data['max_latency_s']['max']} s; {data['at_rest']['max_latency_s']} s at rest), "
            f"deploy median {data['deploy_s']['median']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
