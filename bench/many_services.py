"""Deploy N tiny web services in one Blueprint: time to all serving, daemon at rest, reloads.

For each N (default 100 and 500) a fresh Shipyard (daemon + HAProxy in a temporary
SHIPYARD_HOME, tests/support/harness.py) deploys ONE Blueprint of N ``type: web`` services of
bench/apps/tinyweb (one process each, ~14 MB) with ``shipyard deploy -f ... --wait``, then:

- checks that every service answers ``GET /`` through the edge (Host ``<name>.localhost``) with
  200 and its own name; time to all serving runs from the deploy command's start until the last
  service answered;
- measures the daemon's CPU (% of one core) and RSS over ``--rest-seconds`` at rest;
- counts HAProxy reloads (the master CLI's ``show proc``) during the deploy and at rest;
- sums the RSS of every instance process, for context.

    .venv/bin/python bench/many_services.py [--services 100 500] [--rest-seconds 60]

Prints JSON, then a one-line summary. Target: failed_services 0 for every N.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import APPS, Shipyard, shut_down

MB = 1024 * 1024


@dataclass(frozen=True)
class App:
    source: Path
    runtime: str
    start: str
    about: str


APP_CHOICES = {
    "python": App(
        Path(__file__).resolve().parent / "apps" / "tinyweb",
        "python",
        "python3 app.py",
        "bench/apps/tinyweb (stdlib socket, one connection at a time)",
    ),
    "pyweb": App(APPS / "pyweb", "python", "python3 app.py", "tests/apps/pyweb (threads)"),
    "node": App(APPS / "nodeweb", "node", "node server.js", "tests/apps/nodeweb (Node http)"),
}

SERVICE = """\
  - type: web
    name: {name}
    runtime: {runtime}
    rootDir: app
    startCommand: {start}
    healthCheckPath: /healthz
    numInstances: 1
"""


def log(msg: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:7.1f}s] " if started is not None else ""
    print(f"many_services: {stamp}{msg}", file=sys.stderr, flush=True)


# -- HAProxy's master CLI ---------------------------------------------------------------------


def show_proc(master_sock: Path, timeout: float = 5.0) -> str:
    """``show proc`` on a connection of its own (2.6 answers once the input ends, then closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(master_sock))
        sock.sendall(b"show proc\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def master_reloads(master_sock: Path) -> tuple[int, int]:
    """(master pid, reloads) from the master line, e.g. ``123  master  4 [failed: 0]  0d...``."""
    text = show_proc(master_sock)
    for line in text.splitlines():
        cols = line.split()
        if len(cols) > 2 and cols[0].isdigit() and cols[1] == "master":
            return int(cols[0]), int(cols[2])
    raise RuntimeError(f"no master line in 'show proc': {text[:300]!r}")


# -- processes --------------------------------------------------------------------------------


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS bytes, processes) of a process and its descendants; (0, 0) if it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = count = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            count += 1
        except psutil.Error:
            pass
    return total, count


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


# -- one run ----------------------------------------------------------------------------------


def blueprint(names: list[str], app: App) -> str:
    return "services:\n" + "".join(
        SERVICE.format(name=name, runtime=app.runtime, start=app.start) for name in names
    )


def serves(sy: Shipyard, name: str) -> bool:
    try:
        status, body = sy.get(f"{name}.localhost", timeout=10)
    except OSError:
        return False
    if status != 200:
        return False
    if body.strip() == name:
        return True
    try:
        return bool(json.loads(body).get("service") == name)
    except ValueError:
        return False


def services(sy: Shipyard) -> list[dict[str, Any]]:
    """Every service as JSON (the client returns models or plain dicts, depending on version)."""
    with sy.client() as c:
        found: list[Any] = list(c.services())
    return [s if isinstance(s, dict) else s.model_dump(mode="json") for s in found]


def deploy(sy: Shipyard, bp: Path, total: int, timeout: float) -> tuple[int, str, float]:
    """``shipyard deploy -f bp --wait``; logs progress every 15 s. (exit code, output, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli.main", "deploy", "-f", str(bp), "--wait"],
        env=sy.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    while True:
        try:
            proc.wait(timeout=15)
            break
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            proc.kill()
            proc.wait()
            lines.append(f"(bench: deploy --wait killed after {timeout:.0f} s)\n")
            break
        try:
            found = services(sy)
            live = sum(1 for s in found if s["status"] == "live")
            running = sum(1 for s in found if s["running_instances"] > 0)
            log(f"deploying: {running}/{total} with a running instance, {live} live", started)
        except Exception as exc:
            log(f"deploying: progress unavailable ({exc})", started)
    reader.join(timeout=10)
    return proc.returncode, "".join(lines), time.monotonic() - started


def run(n: int, rest_seconds: float, app: App, deploy_timeout: float) -> dict[str, Any]:
    names = [f"s{i:03d}" for i in range(1, n + 1)]
    result: dict[str, Any] = {"services": n}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        repo = Path(tmp) / "repo"
        shutil.copytree(app.source, repo / "app")
        bp = repo / "render.yaml"
        bp.write_text(blueprint(names, app))
        master_sock = sy.settings.haproxy_dir / "master.sock"
        instance_pids: list[int] = []
        try:
            sy.up()
            daemon = psutil.Process(sy.daemon_pid())
            master_pid, reloads_before = master_reloads(master_sock)
            cpu_before = cpu_seconds(daemon)
            log(f"N={n}: deploying (HAProxy master {master_pid}, reloads {reloads_before})")
            t0 = time.monotonic()
            code, output, deploy_s = deploy(sy, bp, n, deploy_timeout)
            result["deploy_seconds"] = round(deploy_s, 1)
            result["daemon_cpu_percent_during_deploy"] = round(
                100 * (cpu_seconds(daemon) - cpu_before) / deploy_s, 1
            )
            master_after, reloads_after = master_reloads(master_sock)
            result["haproxy_reloads_during_deploy"] = reloads_after - reloads_before
            result["haproxy_restarted"] = master_after != master_pid
            if code != 0:
                result["error"] = f"deploy --wait exited {code}:\n{output[-4000:]}"
                log(f"N={n}: deploy failed ({code}) after {deploy_s:.1f} s:\n{output[-4000:]}")
            else:
                log(f"N={n}: deploy --wait returned after {deploy_s:.1f} s")

            pending = set(names)
            deadline = time.monotonic() + (60 if code == 0 else 0)  # failed: one pass only
            last_ok = t0
            while True:
                for name in sorted(pending):
                    if serves(sy, name):
                        pending.discard(name)
                        last_ok = time.monotonic()
                if not pending or time.monotonic() >= deadline:
                    break
                time.sleep(1)
            result["failed_services"] = len(pending)
            result["failed_samples"] = sorted(pending)[:10]
            result["all_serving_seconds"] = None if pending else round(last_ok - t0, 1)
            log(f"N={n}: {n - len(pending)}/{n} services answer through the edge")

            if code != 0:
                return result
            for svc in services(sy):
                instance_pids += [i["pid"] for i in svc["instances"] if i.get("pid")]
            log(f"N={n}: at rest for {rest_seconds:.0f} s ({len(instance_pids)} instances)")
            _, reloads_rest = master_reloads(master_sock)
            rss: list[int] = []
            cpu_rest = cpu_seconds(daemon)
            rest_t0 = time.monotonic()
            while time.monotonic() - rest_t0 < rest_seconds:
                rss.append(daemon.memory_info().rss)
                time.sleep(min(1.0, max(0.0, rest_seconds - (time.monotonic() - rest_t0))))
            rest_s = time.monotonic() - rest_t0
            cpu_rest = cpu_seconds(daemon) - cpu_rest
            rss.append(daemon.memory_info().rss)
            _, reloads_end = master_reloads(master_sock)
            log(f"N={n}: show proc at the end:\n{show_proc(master_sock).rstrip()}")
            instance_rss = [tree_rss(pid) for pid in instance_pids]
            haproxy_rss = tree_rss(master_after)
            result |= {
                "daemon_cpu_percent_at_rest": round(100 * cpu_rest / rest_s, 2),
                "daemon_rss_mb_at_rest": round(rss[-1] / MB, 1),
                "daemon_rss_mb_at_rest_max": round(max(rss) / MB, 1),
                "daemon_threads": daemon.num_threads(),
                "haproxy_reloads_at_rest": reloads_end - reloads_rest,
                "instances": len(instance_pids),
                "instance_processes": sum(c for _, c in instance_rss),
                "instance_rss_mb_total": round(sum(r for r, _ in instance_rss) / MB, 1),
                "haproxy_rss_mb_total": round(haproxy_rss[0] / MB, 1),
                "rest_seconds": round(rest_s, 1),
            }
        except Exception as exc:
            result.setdefault("error", f"{type(exc).__name__}: {exc}")
            log(f"N={n}: failed: {type(exc).__name__}: {exc}")
        finally:
            log(f"N={n}: shipyard down")
            shut_down(sy, tmp, result, timeout_s=max(120, 2 * n))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--services",
        type=int,
        nargs="+",
        action="extend",
        help="numbers of services, one run each (repeatable; default: 100 500)",
    )
    parser.add_argument("--rest-seconds", type=float, default=60)
    parser.add_argument("--app", choices=sorted(APP_CHOICES), default="python")
    parser.add_argument(
        "--deploy-timeout",
        type=float,
        default=None,
        help="seconds before deploy --wait is abandoned (default: 300 + 10 per service)",
    )
    args = parser.parse_args()
    counts: list[int] = args.services or [100, 500]
    app = APP_CHOICES[args.app]
    runs = []
    for n in counts:
        timeout = args.deploy_timeout or 300 + 10 * n
        runs.append(run(n, args.rest_seconds, app, timeout))
        log(f"N={n}: {json.dumps(runs[-1])}")
    report = {
        "benchmark": "many_services",
        "app": app.about,
        "rest_seconds": args.rest_seconds,
        "cpus": psutil.cpu_count(),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    summary = "; ".join(
        f"N={r['services']}: all serving {r.get('all_serving_seconds')} s "
        f"(deploy {r.get('deploy_seconds')} s), {r.get('failed_services', '?')} failed, "
        f"daemon {r.get('daemon_cpu_percent_at_rest')} % CPU / "
        f"{r.get('daemon_rss_mb_at_rest')} MB at rest, reloads "
        f"{r.get('haproxy_reloads_during_deploy')} + {r.get('haproxy_reloads_at_rest')}"
        for r in runs
    )
    print(f"many_services: {summary}")
    ok = all(r.get("failed_services") == 0 and "error" not in r for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
