"""Redeploy a web service 20 times under continuous load; count failed requests.

The app (tests/apps/pyweb) boots in ~2 s and exits IMMEDIATELY on SIGTERM, so only Shipyard's
health-gated start and HAProxy drain stand between a deploy and dropped requests.

    .venv/bin/python bench/deploy_under_load.py [--deploys 20] [--workers 8]

Prints JSON, then a one-line summary. Target: 0 failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Project, Shipyard, load

BLUEPRINT = """
services:
  - type: web
    name: bench
    runtime: python
    rootDir: pyweb
    startCommand: python3 app.py
    healthCheckPath: /healthz
    numInstances: 2
    maxShutdownDelaySeconds: 5
    envVars:
      - {{key: VERSION, value: "{version}"}}
      - {{key: BOOT_DELAY, value: "2"}}
      - {{key: EXIT_ON_SIGTERM, value: "1"}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        project = Project.create(Path(tmp) / "repo")
        bp = project.blueprint(BLUEPRINT.format(version="v0"))
        sy.up()
        try:
            sy.ok("deploy", "-f", str(bp), "--wait")
            durations = []
            started = time.monotonic()
            with load(sy.http_port, "bench.localhost", workers=args.workers) as result:
                time.sleep(1)
                for n in range(1, args.deploys + 1):
                    project.blueprint(BLUEPRINT.format(version=f"v{n}"))
                    t0 = time.monotonic()
                    sy.ok("deploy", "-f", str(bp), "--wait", timeout=300)
                    durations.append(time.monotonic() - t0)
                time.sleep(1)
            elapsed = time.monotonic() - started
            final = sy.get_json("bench")["version"]
        finally:
            sy.down()
    report = {
        "benchmark": "deploy_under_load",
        "deploys": args.deploys,
        "instances": 2,
        "app_boot_s": 2,
        "load_workers": args.workers,
        "requests_sent": result.sent,
        "requests_failed": result.failed,
        "failure_samples": result.errors[:5],
        "requests_per_s": round(result.sent / elapsed, 1),
        "deploy_s": {
            "min": round(min(durations), 2),
            "median": round(statistics.median(durations), 2),
            "max": round(max(durations), 2),
        },
        "versions_served": len(result.versions),
        "final_version": final,
    }
    print(json.dumps(report, indent=2))
    print(
        f"deploy_under_load: {args.deploys} deploys, {result.sent} requests, "
        f"{result.failed} failed, deploy median {report['deploy_s']['median']} s"
    )
    return 0 if result.failed == 0 and final == f"v{args.deploys}" else 1


if __name__ == "__main__":
    sys.exit(main())
