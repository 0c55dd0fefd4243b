"""Cold vs warm builds: what the per-service build cache (builds/cache.py) saves.

Three services are deployed through a real Shipyard (tests/support/harness.py) with
``shipyard deploy -f render.yaml --wait``:

- ``node``: ``tests/apps/benchnode`` (Express, lodash, dayjs, zod, pino, axios; 97 packages in
  its committed package-lock.json), built with ``npm ci --no-audit --no-fund``;
- ``pip``: ``tests/apps/benchpy`` (requests, fastapi, pydantic, uvicorn pinned in
  requirements.txt), built with ``pip install -r requirements.txt``;
- ``uv``: the same app built with ``uv pip install -r requirements.txt``.

Each round deploys with ``--clear-cache`` (cold: every package is downloaded, and nothing of
the previous release's installed dependencies is reused), then deploys again (warm: the cache
from the cold build and, the lockfiles being unchanged, a copy of the previous release's
virtualenv or node_modules to start from; ``npm ci`` removes node_modules and reinstalls from
the cache). A deploy changes an env var (``ROUND``), so each one builds a new release. Build time
is the release's created -> built time from the API (source copy, virtualenv, toolchain,
buildCommand, sharing with the previous release). Before the rounds, one throwaway deploy of
each service makes the once-per-host things (the virtualenv template) so the first cold build
does not pay for them.

    nice -n 10 .venv/bin/python bench/build_cache.py [--rounds 3] [--keep-home]

Prints JSON, then a one-line summary with warm/cold ratios of the medians (target <= 0.3).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import APPS, Shipyard, keep, shut_down

from shipyard.apimodels import EventView

SERVICES = {
    "node": ("benchnode", "node", "npm ci --no-audit --no-fund", "npm start"),
    "pip": ("benchpy", "python", "pip install -r requirements.txt", "python app.py"),
    "uv": ("benchpy", "python", "uv pip install -r requirements.txt", "python app.py"),
}


def blueprint(round_: str) -> str:
    out = ["services:"]
    for name, (root, runtime, build, start) in SERVICES.items():
        out += [
            "  - type: web",
            f"    name: {name}",
            f"    runtime: {runtime}",
            f"    rootDir: {root}",
            f"    buildCommand: {build}",
            f"    startCommand: {start}",
            "    envVars:",
            "      - key: ROUND",
            f'        value: "{round_}"',
        ]
    return "\n".join(out) + "\n"


def log(msg: str, started: float) -> None:
    print(f"build_cache: [{time.monotonic() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)


def log_stamps(build_log: Path) -> list[float]:
    """Times of the timestamped lines of a build log (the build command's output)."""
    stamps = []
    with contextlib.suppress(FileNotFoundError):
        for line in (build_log / "current").read_text(errors="replace").splitlines():
            head = line.split(" ", 1)[0]
            if head.endswith("Z") and "T" in head:
                with contextlib.suppress(ValueError):
                    stamps.append(datetime.fromisoformat(head.replace("Z", "+00:00")).timestamp())
    return stamps


def deploy(
    sy: Shipyard, bp: Path, round_: str, timeout: float, *flags: str
) -> dict[str, dict[str, float]]:
    """Deploy every service; per service, its new release's build seconds (created -> built)
    and the buildCommand's (its "building" event -> its last line of output)."""
    bp.write_text(blueprint(round_))
    out = sy.cli("deploy", "-f", str(bp), "--wait", *flags, timeout=timeout)
    if out.code != 0:
        raise RuntimeError(f"deploy {round_} exited {out.code}:\n{out.text[-4000:]}")
    seconds: dict[str, dict[str, float]] = {}
    with sy.client() as c:
        for name in SERVICES:
            rel = max(c.releases(name), key=lambda r: r.number)
            assert rel.finished_at is not None and rel.deploy_id is not None, rel
            row = {"build": round(rel.finished_at - rel.created_at, 2)}
            events: list[EventView] = []
            while page := c.events(rel.deploy_id, after=events[-1].id if events else 0).events:
                events += page
            started = [
                e.ts for e in events
                if e.service == name and e.message.startswith(f"release {rel.number}: building (")
            ]  # fmt: skip
            release_dir = sy.settings.services_dir / name / "releases" / str(rel.number)
            stamps = log_stamps(release_dir / "build-log")
            if started and stamps:
                row["command"] = round(stamps[-1] - started[0], 2)
            seconds[name] = row
    return seconds


def cache_mb(sy: Shipyard, name: str) -> float:
    path = sy.home / "cache" / name
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return round(total / 1e6, 1)


def run(rounds: int, timeout: float, keep_home: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"rounds": rounds, "load_average_at_start": psutil.getloadavg()}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-", dir="/tmp") as tmp:
        repo = Path(tmp) / "repo"
        for app in ("benchnode", "benchpy"):
            shutil.copytree(APPS / app, repo / app)
        bp = repo / "render.yaml"
        # one build at a time: each is measured alone
        sy = Shipyard(Path(tmp) / "home", extra_env={"SHIPYARD_DEPLOY_CONCURRENCY": "1"})
        try:
            sy.up()
            deploy(sy, bp, "warmup", timeout)
            log("warm-up deploy done", started)
            rows: list[dict[str, Any]] = []
            for n in range(1, rounds + 1):
                cold = deploy(sy, bp, f"{n}-cold", timeout, "--clear-cache")
                sizes = {name: cache_mb(sy, name) for name in SERVICES}
                warm = deploy(sy, bp, f"{n}-warm", timeout)
                rows.append({"round": n, "cold": cold, "warm": warm, "cache_mb": sizes})
                log(f"round {n}: cold {cold}, warm {warm}", started)
            result["per_round"] = rows
            summary: dict[str, Any] = {}
            for name in SERVICES:
                cold_m = statistics.median(r["cold"][name]["build"] for r in rows)
                warm_m = statistics.median(r["warm"][name]["build"] for r in rows)
                summary[name] = {
                    "build": SERVICES[name][2],
                    "cold_median_s": round(cold_m, 2),
                    "warm_median_s": round(warm_m, 2),
                    "ratio_warm_over_cold": round(warm_m / cold_m, 3),
                    "cache_mb": rows[-1]["cache_mb"][name],
                }
                commands = [
                    (r["cold"][name].get("command"), r["warm"][name].get("command")) for r in rows
                ]
                if all(c is not None and w is not None for c, w in commands):
                    cold_c = statistics.median(c for c, _ in commands if c is not None)
                    warm_c = statistics.median(w for _, w in commands if w is not None)
                    summary[name] |= {
                        "command_cold_median_s": round(cold_c, 2),
                        "command_warm_median_s": round(warm_c, 2),
                        "command_ratio_warm_over_cold": round(warm_c / cold_c, 3),
                    }
            result["services"] = summary
            status, _ = sy.get("node.localhost")
            result["node_serves"] = status == 200
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            log(f"failed: {result['error']}", started)
        finally:
            shut_down(sy, tmp, result)
            if keep_home:
                result["kept_home"] = str(keep(sy.home))
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold + warm deploys per round")
    parser.add_argument("--deploy-timeout", type=float, default=1200, help="seconds per deploy")
    parser.add_argument("--keep-home", action="store_true", help="keep the Shipyard home")
    args = parser.parse_args()
    result = run(max(1, args.rounds), args.deploy_timeout, args.keep_home)
    print(json.dumps({"benchmark": "build_cache", "cpus": psutil.cpu_count(), **result}, indent=2))
    if "error" in result:
        print(f"build_cache: FAILED: {result['error']}")
        return 1
    parts = [
        f"{name} {s['cold_median_s']} s cold -> {s['warm_median_s']} s warm "
        f"(ratio {s['ratio_warm_over_cold']})"
        for name, s in result["services"].items()
    ]
    print("build_cache: " + "; ".join(parts) + " (target <= 0.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
