"""Bounded logs and a full disk, against a real daemon: an app writing 20 MB/s keeps its log
under the cap with no gap, also while the daemon is dead; a full SHIPYARD_HOME keeps apps
serving, fails a deploy with the disk message, and a deploy works again once space is freed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.drivers.local.logfiles import MAX_LOG_BYTES, dropped_lines, log_bytes, log_files
from tests.integration.test_deploy import deploy
from tests.support.harness import Project, Shipyard, load, wait_for

STAMP = len("2026-12-02T05:48:00.123456Z ")

CHATTY = """
  - type: worker
    name: {name}
    runtime: python
    rootDir: chatty
    startCommand: python3 chatty.py
    envVars:
      - key: RATE_MB_PER_S
        value: "{rate}"
"""


def _instance_log(sy: Shipyard, service: str) -> Path:
    [inst] = sy.service(service)["instances"]
    return sy.home / "services" / service / "instances" / str(inst["id"])


def _numbers(log: Path) -> list[int]:
    numbers = []
    for file in log_files(log):
        with file.open("rb") as f:
            for raw in f:
                text = raw[STAMP:].split(b" ", 1)[0]
                if text.isdigit():
                    numbers.append(int(text))
    return numbers


@pytest.mark.timeout(240)
def test_an_app_writing_20_mb_per_s_stays_under_the_cap_with_no_gap(
    own_shipyard: Shipyard, project: Project
) -> None:
    sy = own_shipyard
    deploy(sy, project.blueprint("services:\n" + CHATTY.format(name="chatty", rate=20)))
    log = _instance_log(sy, "chatty")
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], log_bytes(log))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        time.sleep(10)
        sy.kill_daemon()  # nothing bounds the log but its writer from here ...
        time.sleep(10)
        sy.up()  # ... to here
        time.sleep(10)
    finally:
        stop.set()
        sampler.join()
    pid = sy.service("chatty")["instances"][0]["pid"]
    os.kill(pid, signal.SIGSTOP)  # hold the writer still while its files are read
    try:
        time.sleep(1)  # its log writer drains the pipe
        numbers = _numbers(log)
    finally:
        os.kill(pid, signal.SIGCONT)
    line = 100 + STAMP
    assert peak[0] <= MAX_LOG_BYTES + line, f"peak {peak[0]} over the cap {MAX_LOG_BYTES}"
    assert len(numbers) > 0.8 * MAX_LOG_BYTES / line  # the cap is used, not a tiny window
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "a gap in the log"
    assert numbers[0] > 1  # the oldest lines were rotated away: ~600 MB were written
    assert dropped_lines(log) == 0


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """SHIPYARD_HOME on its own 160 MB tmpfs (root only)."""
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(home)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def _fill(path: Path) -> None:
    """Fill the filesystem of ``path`` up to the last block."""
    with path.open("wb", buffering=0) as f:  # unbuffered: no failing flush at close
        for size in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)


WEB = """
  - type: web
    name: {name}
    runtime: node
    rootDir: nodeweb
    startCommand: node server.js
    healthCheckPath: /healthz
    maxShutdownDelaySeconds: 2
    envVars:
      - key: VERSION
        value: {version}
"""


@pytest.mark.timeout(300)
def test_a_full_disk_is_survived(small_home: Path, project: Project) -> None:
    sy = Shipyard(small_home, extra_env={"SHIPYARD_MIN_FREE_MB": "8"})
    sy.up()
    try:
        bp = project.blueprint(
            "services:\n" + WEB.format(name="site", version="v1")
            + CHATTY.format(name="noisy", rate=1)
        )  # fmt: skip
        deploy(sy, bp)
        noisy_pid = sy.service("noisy")["instances"][0]["pid"]
        site_pid = sy.service("site")["instances"][0]["pid"]
        filler = small_home / "filler"
        with load(sy.http_port, "site.localhost") as traffic:
            _fill(filler)
            time.sleep(3)  # the apps keep writing logs to a full disk
            refused = sy.cli("deploy", "-f", str(bp), "--wait", timeout=60)
            status = sy.cli("ps")
            health = json.loads(sy.cli("ps", "--json").out or "[]")
        assert traffic.sent > 100 and traffic.failed == 0, traffic.errors[:5]
        assert refused.code == 14, refused.text
        assert f"not enough disk space on {small_home}" in refused.err
        assert "warning: low disk space" in status.out
        assert {s["name"]: s["status"] for s in health} == {"site": "live", "noisy": "live"}
        # nobody died or was restarted for it
        assert sy.service("noisy")["instances"][0]["pid"] == noisy_pid
        assert sy.service("site")["instances"][0]["pid"] == site_pid
        with sy.client() as c:
            disk = c.health().disk
        assert disk is not None and disk.low
        # Room for the checks, not for the build: the disk fills DURING the operation.
        free = shutil.disk_usage(small_home).free
        os.truncate(filler, max(0, filler.stat().st_size - (40_000_000 - free)))
        original = bp.read_text()
        hungry = original.replace(
            "startCommand: node server.js",
            "buildCommand: head -c 80000000 /dev/zero > big\n    startCommand: node server.js",
        )
        t0 = time.monotonic()
        # only site: noisy keeps its instance (and the log writer that counts its drops)
        midway = sy.cli("deploy", "-f", str(project.blueprint(hungry)), "-s", "site", "--wait",
                        timeout=120)  # fmt: skip
        assert midway.code in (10, 14), midway.text  # failed, never stuck "running"
        assert time.monotonic() - t0 < 90
        assert "disk" in midway.err, midway.err
        with sy.client() as c:
            for name in ("site", "noisy"):
                statuses = {r.status for r in c.releases(name)}
                assert not statuses & {"building", "built", "deploying"}, (name, statuses)
        assert sy.get_json("site")["version"] == "v1"  # the old release kept serving
        filler.unlink()
        noisy_log = _instance_log(sy, "noisy")
        assert wait_for(lambda: dropped_lines(noisy_log) > 0, timeout=10)
        # once space is back: the writer says what it dropped, and deploys work again
        assert wait_for(
            lambda: any(b"shipyard-logd: dropped" in f.read_bytes() for f in log_files(noisy_log)),
            timeout=10,
        )
        deploy(sy, project.blueprint(original.replace("value: v1", "value: v2")))
        assert sy.get_json("site")["version"] == "v2"
    finally:
        sy.down()
        shutil.rmtree(small_home / "services", ignore_errors=True)
