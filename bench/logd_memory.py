"""Memory of the log writers: one ``shipyard-logd`` per app instance.

A fresh Shipyard (tests/support/harness.py) deploys one Blueprint with one ``type: worker``,
``runtime: python`` service of N instances (default 20), each printing a line every 100 ms
(a ticker written into the temporary repository, stdlib only). After ``--settle-seconds`` the
benchmark finds every ``shipyard-logd`` whose command line names an instance log directory of
this Shipyard home (psutil) and, over ``--samples`` samples one second apart, reads for each
writer and each instance process:

- VmRSS (``/proc/PID/status``);
- its private memory, Private_Clean + Private_Dirty (``/proc/PID/smaps_rollup``): what the
  process alone costs (the shared pages of the binary and libc are paid once for all);
- Pss, for context.

It also checks that the writers keep up: lines stored per second in each instance's
``current`` log file over the sampling window.

    .venv/bin/python bench/logd_memory.py [--instances 20] [--settle-seconds 10] [--samples 10]

Prints JSON, then a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Shipyard, shut_down, wait_for

KIB = 1024
SERVICE = "ticker"
LOGD = "shipyard-logd"
KEYS = ("rss_kib", "private_kib", "pss_kib")

TICKER = """\
import itertools
import os
import sys
import time

interval = float(os.environ.get("TICK_INTERVAL", "0.1"))
for n in itertools.count(1):
    sys.stdout.write(f"ticker[{os.getpid()}] line {n}: the quick brown fox jumps over it\\n")
    sys.stdout.flush()
    time.sleep(interval)
"""

BLUEPRINT = """\
services:
  - type: worker
    name: {name}
    runtime: python
    startCommand: python3 ticker.py
    numInstances: {instances}
    envVars:
      - key: TICK_INTERVAL
        value: "0.1"
"""


def log(msg: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:7.1f}s] " if started is not None else ""
    print(f"logd_memory: {stamp}{msg}", file=sys.stderr, flush=True)


# -- /proc --------------------------------------------------------------------------------------


def kib_fields(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    """``Name:   123 kB`` lines of a /proc file, in KiB."""
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            found[key] = int(rest.split()[0])
    return found


def memory(pid: int) -> dict[str, int]:
    """VmRSS, private (Private_Clean + Private_Dirty) and Pss of one process, in KiB."""
    status = kib_fields(Path(f"/proc/{pid}/status"), ("VmRSS",))
    rollup = kib_fields(
        Path(f"/proc/{pid}/smaps_rollup"), ("Pss", "Private_Clean", "Private_Dirty")
    )
    return {
        "rss_kib": status["VmRSS"],
        "private_kib": rollup["Private_Clean"] + rollup["Private_Dirty"],
        "pss_kib": rollup["Pss"],
    }


def stats(values: list[int]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "total": sum(values),
    }


# -- processes ----------------------------------------------------------------------------------


def writers(instances_dir: Path) -> dict[str, int]:
    """Instance id -> pid of the ``shipyard-logd`` writing its log directory (the last argument
    of its command line is ``instances_dir/<id>``)."""
    found: dict[str, int] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] != LOGD or not cmdline:
            continue
        directory = Path(cmdline[-1])
        if directory.parent == instances_dir:
            found[directory.name] = proc.pid
    return found


def running(sy: Shipyard) -> dict[str, int]:
    """Instance id -> pid of every running instance of the service."""
    svc = sy.service(SERVICE)
    return {
        i["id"]: int(i["pid"]) for i in svc["instances"] if i["state"] == "running" and i["pid"]
    }


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


# -- the run ------------------------------------------------------------------------------------


def run(instances: int, settle_s: float, samples: int) -> dict[str, Any]:
    result: dict[str, Any] = {"instances_requested": instances}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-", dir="/tmp") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "ticker.py").write_text(TICKER)
        bp = repo / "render.yaml"
        bp.write_text(BLUEPRINT.format(name=SERVICE, instances=instances))
        instances_dir = sy.settings.services_dir / SERVICE / "instances"
        try:
            sy.up()
            out = sy.cli("deploy", "-f", str(bp), "--wait", timeout=300)
            if out.code != 0:
                result["error"] = f"deploy exited {out.code}:\n{out.text[-4000:]}"
                log(result["error"])
                return result
            log(f"deployed {instances} instances; settling {settle_s:.0f} s", started)
            time.sleep(settle_s)
            apps = wait_for(lambda: (r := running(sy)) and len(r) == instances and r, 60)
            logds = wait_for(lambda: (w := writers(instances_dir)) and len(w) >= instances and w)
            result["writers_found"] = len(logds)
            result["writers_without_instance"] = sorted(set(logds) - set(apps))
            ids = sorted(set(apps) & set(logds))

            per_logd: dict[str, list[dict[str, int]]] = {i: [] for i in ids}
            per_app: dict[str, list[dict[str, int]]] = {i: [] for i in ids}
            lines0 = {i: count_lines(instances_dir / i / "current") for i in ids}
            t0 = time.monotonic()
            for k in range(samples):
                for i in ids:
                    per_logd[i].append(memory(logds[i]))
                    per_app[i].append(memory(apps[i]))
                if k < samples - 1:
                    time.sleep(1)
            window = time.monotonic() - t0
            lines1 = {i: count_lines(instances_dir / i / "current") for i in ids}
            rates = [(lines1[i] - lines0[i]) / window for i in ids]

            def last(rows: dict[str, list[dict[str, int]]], key: str) -> list[int]:
                return [rows[i][-1][key] for i in ids]

            def peak(rows: dict[str, list[dict[str, int]]], key: str) -> list[int]:
                return [max(s[key] for s in rows[i]) for i in ids]

            logd_exe = psutil.Process(logds[ids[0]]).exe()
            app_cmd = " ".join(psutil.Process(apps[ids[0]]).cmdline())
            result |= {
                "measured": len(ids),
                "logd_binary": logd_exe,
                "logd_binary_bytes": os.path.getsize(logd_exe),
                "instance_process": app_cmd,
                "sample_window_seconds": round(window, 1),
                "lines_per_second_per_instance": {
                    "min": round(min(rates), 1),
                    "median": round(statistics.median(rates), 1),
                    "max": round(max(rates), 1),
                },
                "logd_kib": {
                    k: stats(last(per_logd, k)) for k in ("rss_kib", "private_kib", "pss_kib")
                },
                "logd_peak_kib": {k: stats(peak(per_logd, k)) for k in ("rss_kib", "private_kib")},
                "instance_kib": {
                    k: stats(last(per_app, k)) for k in ("rss_kib", "private_kib", "pss_kib")
                },
                "one_writer": {"instance": ids[0], "pid": logds[ids[0]], **per_logd[ids[0]][-1]},
                "one_instance": {"instance": ids[0], "pid": apps[ids[0]], **per_app[ids[0]][-1]},
            }
        except Exception as exc:
            result.setdefault("error", f"{type(exc).__name__}: {exc}")
            log(f"failed: {type(exc).__name__}: {exc}")
        finally:
            log("shipyard down", started)

            def settle() -> None:  # writers exit once their instance's output closes
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: not writers(instances_dir), timeout=10)

            shut_down(sy, tmp, result, settle=settle)
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--settle-seconds", type=float, default=10)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    if args.instances < 1 or args.samples < 1:
        parser.error("--instances and --samples must be at least 1")
    result = run(args.instances, args.settle_seconds, args.samples)
    report = {"benchmark": "logd_memory", "cpus": psutil.cpu_count(), **result}
    print(json.dumps(report, indent=2))
    if "error" in result or result.get("processes_left_after_down"):
        print(f"logd_memory: FAILED: {result.get('error') or 'processes left after down'}")
        return 1
    w, a = result["logd_kib"], result["instance_kib"]
    print(
        f"logd_memory: {result['measured']} writers, each VmRSS "
        f"{w['rss_kib']['median']:.0f} KiB, private {w['private_kib']['median']:.0f} KiB "
        f"(total private {w['private_kib']['total'] / KIB:.1f} MiB); one instance (python3) "
        f"VmRSS {a['rss_kib']['median']:.0f} KiB, private {a['private_kib']['median']:.0f} KiB; "
        f"{result['lines_per_second_per_instance']['median']} lines/s per instance stored"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
