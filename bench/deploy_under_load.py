"""Redeploy a web service N times under continuous load; count failed requests.

Two rows, measured in one run:

- ``port``: 2 instances of tests/apps/pyweb listening on $PORT, booting in ~2 s and exiting
  IMMEDIATELY on SIGTERM, so only Shipyard's health-gated start and HAProxy drain stand between
  a deploy and dropped requests (the surge rollout: new instances beside the old).
- ``fixed-port``: 1 instance that ignores $PORT and listens on a fixed port (FIXED_PORT), so two
  generations cannot run side by side: Shipyard uses the recreate rollout (drain and stop the
  old instance, then start the new one) and HAProxy holds requests meanwhile.

    .venv/bin/python bench/deploy_under_load.py [--deploys 20] [--workers 8]
        [--modes port,fixed-port]

Prints JSON, then one summary line per row. Target: 0 failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Project, Shipyard, free_port, load

BLUEPRINT = """
services:
  - type: web
    name: bench
    runtime: python
    rootDir: pyweb
    startCommand: python3 app.py
    healthCheckPath: /healthz
    numInstances: {instances}
    maxShutdownDelaySeconds: 5
    envVars:
      - {{key: VERSION, value: "{version}"}}
      - {{key: BOOT_DELAY, value: "2"}}
      - {{key: EXIT_ON_SIGTERM, value: "{exit_on_sigterm}"}}
{extra}"""

MODES: dict[str, dict[str, Any]] = {
    "port": {"instances": 2, "exit_on_sigterm": "1", "extra": ""},
    # graceful on SIGTERM: in recreate the old instance is drained, then stopped
    "fixed-port": {"instances": 1, "exit_on_sigterm": "0", "extra": "fixed"},
}


def blueprint(mode: str, version: str, port: int) -> str:
    cfg = dict(MODES[mode])
    if cfg["extra"] == "fixed":
        cfg["extra"] = f'      - {{key: FIXED_PORT, value: "{port}"}}\n'
    return BLUEPRINT.format(version=version, **cfg)


def run(mode: str, deploys: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        project = Project.create(Path(tmp) / "repo")
        port = free_port()
        bp = project.blueprint(blueprint(mode, "v0", port))
        sy.up()
        try:
            sy.ok("deploy", "-f", str(bp), "--wait")
            durations = []
            started = time.monotonic()
            with load(sy.http_port, "bench.localhost", workers=workers, pace_s=0) as result:
                time.sleep(1)
                for n in range(1, deploys + 1):
                    project.blueprint(blueprint(mode, f"v{n}", port))
                    t0 = time.monotonic()
                    sy.ok("deploy", "-f", str(bp), "--wait", timeout=300)
                    durations.append(time.monotonic() - t0)
                time.sleep(1)
            elapsed = time.monotonic() - started
            final = sy.get_json("bench")["version"]
        finally:
            sy.down()
    return {
        "mode": mode,
        "deploys": deploys,
        "instances": MODES[mode]["instances"],
        "app_boot_s": 2,
        "load_workers": workers,
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
        "ok": result.failed == 0 and final == f"v{deploys}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--modes", default="port,fixed-port")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    rows = [run(mode, args.deploys, args.workers) for mode in modes]
    print(json.dumps({"benchmark": "deploy_under_load", "rows": rows}, indent=2))
    for row in rows:
        print(
            f"deploy_under_load[{row['mode']}]: {row['deploys']} deploys, "
            f"{row['requests_sent']} requests, {row['requests_failed']} failed, "
            f"deploy median {row['deploy_s']['median']} s"
        )
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
