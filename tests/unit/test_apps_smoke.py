"""Smoke tests for the stdlib test apps under tests/apps (real processes on free ports)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import free_port

APPS = Path(__file__).resolve().parent.parent / "apps"
NODE = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").exists() else None)

COMMANDS = {
    "pyweb": [sys.executable, str(APPS / "pyweb" / "app.py")],
    "nodeweb": [NODE or "node", str(APPS / "nodeweb" / "server.js")],
}
WEB_APPS = [
    "pyweb",
    pytest.param("nodeweb", marks=pytest.mark.skipif(NODE is None, reason="node not installed")),
]


class App:
    def __init__(self, name: str, **env: str) -> None:
        self.port = free_port()
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(self.port)}
        self.proc = subprocess.Popen(
            COMMANDS[name],
            env={**full_env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": "demo.example"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 5.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return time.monotonic() - t0
            except OSError:
                time.sleep(0.02)
        raise AssertionError("app did not listen in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


def start(apps: list[App], name: str, **env: str) -> App:
    app = App(name, **env)
    apps.append(app)
    return app


@pytest.mark.parametrize("name", WEB_APPS)
def test_routes(apps: list[App], name: str) -> None:
    app = start(apps, name, VERSION="v7", RENDER_SERVICE_NAME="web", RENDER_GIT_COMMIT="abc")
    app.wait_ready()
    assert app.get("/healthz") == (200, "ok\n")
    status, body = app.get("/")
    assert status == 200
    assert json.loads(body) == {
        "service": "web",
        "version": "v7",
        "pid": app.proc.pid,
        "port": app.port,
        "commit": "abc",
        "host": "demo.example",
    }
    t0 = time.monotonic()
    assert app.get("/sleep?ms=200")[0] == 200
    assert 0.19 <= time.monotonic() - t0 < 2
    assert app.get("/env?key=VERSION") == (200, "v7")
    assert app.get("/env?key=NOPE")[0] == 404
    assert app.get(f"/proxy?url=http://127.0.0.1:{app.port}/env%3Fkey%3DVERSION") == (200, "v7")
    assert app.get("/proxy?url=http://127.0.0.1:1/")[0] == 502
    assert app.get("/missing")[0] == 404


@pytest.mark.parametrize("name", WEB_APPS)
def test_health_status_and_boot_delay(apps: list[App], name: str) -> None:
    app = start(apps, name, HEALTH_STATUS="503", BOOT_DELAY="0.5")
    assert app.wait_ready() >= 0.45
    assert app.get("/healthz")[0] == 503


@pytest.mark.parametrize("name", WEB_APPS)
def test_crash_on_start(apps: list[App], name: str) -> None:
    app = start(apps, name, CRASH_ON_START="1")
    assert app.proc.wait(timeout=5) == 3
    assert "CRASH_ON_START" in app.proc.communicate()[1]


@pytest.mark.parametrize("name", WEB_APPS)
@pytest.mark.parametrize("graceful", [True, False])
def test_sigterm(apps: list[App], name: str, graceful: bool) -> None:
    app = start(apps, name, EXIT_ON_SIGTERM="0" if graceful else "1")
    app.wait_ready()
    result: list[object] = []

    def slow_request() -> None:
        try:
            result.append(app.get("/sleep?ms=400")[0])
        except (OSError, http.client.HTTPException) as exc:
            result.append(exc)

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.15)  # the request is in flight
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=5) == 0
    worker.join(timeout=5)
    if graceful:
        assert result == [200]  # finished in flight before exiting
    else:
        assert result != [200]  # the hostile app dropped it


def test_worker_heartbeat_and_sigterm(apps: list[App]) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(APPS / "worker" / "worker.py")],
        env={"VERSION": "w1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "heartbeat 1 version=w1" in line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
