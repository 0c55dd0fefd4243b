"""Requests/s and latency of a small backend, directly vs through Shipyard's HAProxy edge.

Both measured in one run with wrk, interleaved (direct, edge, direct, edge) so machine noise
hits both; the ratio is the figure to compare.

    .venv/bin/python bench/edge_overhead.py [--duration 8] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Project, Shipyard

BLUEPRINT = """
services:
  - type: web
    name: edgebench
    runtime: node
    rootDir: nodeweb
    startCommand: node server.js
    healthCheckPath: /healthz
    numInstances: 1
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, host: str, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Host: {host}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        lat[pct] = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock is not None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: run scripts/install-system.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        project = Project.create(Path(tmp) / "repo")
        bp = project.blueprint(BLUEPRINT)
        sy.up()
        try:
            sy.ok("deploy", "-f", str(bp), "--wait")
            port = sy.service("edgebench")["instances"][0]["port"]
            host = "edgebench.localhost"
            direct_url = f"http://127.0.0.1:{port}/"
            edge_url = f"http://127.0.0.1:{sy.http_port}/"
            wrk(direct_url, host, 2, args.connections)  # warm up
            runs: dict[str, list[dict[str, float]]] = {"direct": [], "edge": []}
            for _ in range(2):
                runs["direct"].append(wrk(direct_url, host, args.duration, args.connections))
                runs["edge"].append(wrk(edge_url, host, args.duration, args.connections))
        finally:
            sy.down()

    def best(kind: str) -> dict[str, float]:
        return max(runs[kind], key=lambda r: r["rps"])

    direct, edge = best("direct"), best("edge")
    report = {
        "benchmark": "edge_overhead",
        "backend": "tests/apps/nodeweb (Node http, 1 process)",
        "connections": args.connections,
        "duration_s": args.duration,
        "direct": direct,
        "edge": edge,
        "runs": runs,
        "rps_ratio_edge_over_direct": round(edge["rps"] / direct["rps"], 3),
        "p50_added_ms": round(edge["p50_ms"] - direct["p50_ms"], 3),
        "p99_added_ms": round(edge["p99_ms"] - direct["p99_ms"], 3),
    }
    print(json.dumps(report, indent=2))
    print(
        f"edge_overhead: direct {direct['rps']:.0f} req/s, edge {edge['rps']:.0f} req/s "
        f"(ratio {report['rps_ratio_edge_over_direct']}), p50 +{report['p50_added_ms']} ms, "
        f"p99 +{report['p99_added_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
