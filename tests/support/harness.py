"""A real Shipyard for tests: daemon + HAProxy in a temporary SHIPYARD_HOME on free ports,
driven through the real CLI (subprocess) and the typed client."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import psutil

from shipyard.client import Client
from shipyard.drivers.haproxy.check import bindable
from shipyard.drivers.local.logfiles import tail
from shipyard.settings import Settings

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "apps"


T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | Literal[False] | None], timeout: float = 30, interval: float = 0.1
) -> T:
    """The first truthy value of ``predicate``; AssertionError if none within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout:g} s")
        time.sleep(interval)


def free_port_block(size: int, low: int = 20000, high: int = 30000) -> int:
    """The first port of ``size`` consecutive ports nothing listens on (below the ephemeral
    range, so no test process is handed one by the kernel meanwhile): a test Shipyard's
    internal port region, or a test HAProxy's (several may run on one machine)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - size) // 64 * 64
        if all(bindable(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} free consecutive ports in [{low}, {high})")


_handed_out: set[int] = set()


def free_port(low: int = 19000, high: int = 20000) -> int:
    """A port nothing listens on, below the kernel's ephemeral range (32768+): a port the
    kernel hands out (``bind(0)``) can be taken meanwhile by any outgoing connection's local
    end, which made a daemon's start fail with "port in use". Never the same port twice in
    one test process, and outside the regions ``free_port_block`` hands out (internal ports
    in 20000+, data ports in 12000-19000)."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(low, high)
        if port not in _handed_out and bindable(port):
            _handed_out.add(port)
            if len(_handed_out) > (high - low) // 2:
                _handed_out.clear()
            return port
    raise RuntimeError(f"no free port in [{low}, {high})")


@dataclass
class CLIResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class Shipyard:
    def __init__(self, home: Path, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.http_port = free_port()
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "SHIPYARD_HOME": str(home),
            "SHIPYARD_HTTP_PORT": str(self.http_port),
            "SHIPYARD_API_PORT": str(self.api_port),
            "SHIPYARD_INTERNAL_PORT_BASE": str(free_port_block(256)),
            "SHIPYARD_DATA_PORT_BASE": str(free_port_block(32, low=12000, high=19000)),
            "PATH": f"{Path(sys.executable).parent}:/usr/sbin:{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
        self.settings = Settings.from_env(self.env)

    def cli(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> CLIResult:
        proc = subprocess.run(
            [sys.executable, "-m", "shipyard.cli.main", *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CLIResult(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> CLIResult:
        result = self.cli(*args, timeout=timeout, cwd=cwd)
        assert result.code == 0, f"shipyard {' '.join(args)} failed ({result.code}):\n{result.text}"
        return result

    def client(self) -> Client:
        return Client(self.settings)

    def up(self) -> None:
        self.ok("up", "-d")

    def down(self) -> None:
        self.cli("down", timeout=120)

    def daemon_pid(self) -> int:
        return int((self.home / "daemon.pid").read_text())

    def kill_daemon(self) -> None:
        pid = self.daemon_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                return

    def get(
        self, host: str, path: str = "/", port: int | None = None, timeout: float = 10
    ) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def get_json(self, service: str, path: str = "/") -> dict[str, Any]:
        status, body = self.get(f"{service}.localhost", path)
        assert status == 200, f"{service}{path}: HTTP {status}: {body[:300]}"
        return dict(json.loads(body))

    def service(self, name: str) -> dict[str, Any]:
        with self.client() as c:
            return c.service(name).model_dump(mode="json")


@dataclass
class Project:
    """A repository on disk: the test apps plus a Blueprint the test writes."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Project:
        root.mkdir(parents=True, exist_ok=True)
        for app in ("pyweb", "nodeweb", "worker", "chatty"):
            shutil.copytree(APPS / app, root / app, dirs_exist_ok=True)
        return cls(root)

    def blueprint(self, text: str, name: str = "render.yaml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    max_latency_s: float = 0.0  # the slowest request: the pause a client saw


@contextmanager
def load(
    port: int, host: str, path: str = "/", workers: int = 4, pace_s: float = 0.002
) -> Iterator[LoadResult]:
    """Send requests continuously (keep-alive, like browsers) until the block exits; each
    worker pauses ``pace_s`` between requests, so a test's traffic (hundreds of requests a
    second, enough to hit any gap of a few milliseconds) leaves the 2 cores to what it tests.
    Benchmarks pass 0: as fast as they can."""
    result = LoadResult()
    stop = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while not stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.monotonic()
            try:
                conn.request("GET", path, headers={"Host": host})
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                detail = f"HTTP {resp.status}: {body[:120]!r}"
                version = json.loads(body).get("version", "?") if ok else ""
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, detail, version = False, repr(exc), ""
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                result.sent += 1
                result.max_latency_s = max(result.max_latency_s, time.monotonic() - started)
                if ok:
                    result.versions[version] = result.versions.get(version, 0) + 1
                else:
                    result.failed += 1
                    result.errors.append(detail)
            if pace_s:
                stop.wait(pace_s)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield result
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def leftovers(tmp: str) -> list[psutil.Process]:
    """Processes of one run still alive: running under ``tmp`` or naming it (HAProxy, log
    writers)."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cwd", "cmdline"]):
        cwd, cmdline = proc.info["cwd"] or "", " ".join(proc.info["cmdline"] or ())
        if proc.pid != os.getpid() and (cwd.startswith(tmp) or tmp in cmdline):
            found.append(proc)
    return found


def keep(home: Path) -> Path:
    """Move a benchmark's SHIPYARD_HOME out of its temporary directory (--keep-home); where."""
    kept = Path(tempfile.mkdtemp(prefix="shipyard-bench-kept-", dir="/tmp")) / "home"
    shutil.move(str(home), kept)
    return kept


def shut_down(
    sy: Shipyard,
    tmp: str,
    result: dict[str, Any],
    timeout_s: float = 180,
    settle: Callable[[], None] | None = None,
) -> None:
    """End a benchmark's Shipyard: `shipyard down` (its time in ``result["down_seconds"]``),
    ``settle`` (e.g. wait for log writers), then kill by pid whatever of this run is still alive
    and record it; with an error in ``result``, the daemon's last log lines too."""
    down_t0 = time.monotonic()
    try:
        down = sy.cli("down", timeout=timeout_s)
        if down.code != 0:
            result["down_error"] = down.text[-2000:]
    except subprocess.TimeoutExpired as exc:
        result["down_error"] = str(exc)
    result["down_seconds"] = round(time.monotonic() - down_t0, 1)
    if settle is not None:
        settle()
    left = leftovers(tmp)
    result["processes_left_after_down"] = [p.info["name"] for p in left][:20]
    for proc in left:  # this run's own processes only: kill by pid
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if "error" in result:
        result["daemon_log_tail"] = "\n".join(tail(sy.settings.daemon_log_path, 40))
