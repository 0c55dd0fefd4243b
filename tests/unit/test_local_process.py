"""LocalProcesses against real, short-lived processes (Linux /proc required)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shipyard.clock import FakeClock
from shipyard.drivers.local import (
    ExitStatus,
    LocalProcesses,
    ProcessHandle,
    ProcessSpec,
    handles_with_env,
    tail,
)
from shipyard.errors import RuntimeFailure
from shipyard.run.runtime import Runtime

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


@pytest.fixture
def procs() -> Iterator[LocalProcesses]:
    lp = LocalProcesses()
    started: list[ProcessHandle] = []
    real_start = lp.start

    def tracking_start(spec: ProcessSpec) -> ProcessHandle:
        handle = real_start(spec)
        started.append(handle)
        return handle

    lp.start = tracking_start  # type: ignore[method-assign]
    yield lp
    for handle in started:  # never leak a process, even when a test fails
        lp.stop(handle, grace_s=0)


def spec(tmp_path: Path, command: str, **env: str) -> ProcessSpec:
    return ProcessSpec(command, tmp_path, {**ENV, **env}, tmp_path / "logs" / "out")


STAMP = len("2026-12-02T05:48:00.123456Z ")  # the log writer's prefix on each line


def log_text(path: Path) -> str:
    """What a log directory holds, lines without their time prefix."""
    return "".join(line[STAMP:] + "\n" for line in tail(path, 1_000_000))


def wait_until(predicate: object, timeout: float = 3.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def wait_for_log(path: Path, text: str) -> None:
    assert wait_until(lambda: text in log_text(path)), log_text(path)


def pid_exists(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_start_isolation_env_cwd_and_log(procs: LocalProcesses, tmp_path: Path) -> None:
    s = spec(tmp_path, 'echo "cwd=$PWD foo=$FOO"; echo err >&2; ls /proc/self/fd', FOO="bar")
    handle = procs.start(s)
    assert wait_until(lambda: not procs.alive(handle))
    assert procs.status(handle) == ExitStatus(running=False, exit_code=0, signal=None)
    assert wait_until(lambda: len(log_text(s.log_path).splitlines()) >= 6)
    out = log_text(s.log_path).splitlines()
    assert out[0] == f"cwd={tmp_path} foo=bar"
    assert out[1] == "err"
    assert sorted(out[2:]) == ["0", "1", "2", "3"]  # 3 is ls's own directory fd
    assert os.getsid(0) != handle.pid  # sanity: we are not in its session


def test_new_session_and_log_appends(procs: LocalProcesses, tmp_path: Path) -> None:
    s = spec(tmp_path, "echo one; exec sleep 30")
    s.log_path.mkdir(parents=True)
    (s.log_path / "current").write_text("previous\n")
    handle = procs.start(s)
    assert os.getsid(handle.pid) == handle.pid
    assert os.getpgid(handle.pid) == handle.pid
    wait_for_log(s.log_path, "one")
    assert tail(s.log_path, 5)[0] == "previous" and tail(s.log_path, 5)[1].endswith("Z one")


def test_missing_cwd_raises(procs: LocalProcesses, tmp_path: Path) -> None:
    bad = ProcessSpec("true", tmp_path / "nope", ENV, tmp_path / "out")
    with pytest.raises(RuntimeFailure, match="does not exist"):
        procs.start(bad)


def test_crash_exit_code(procs: LocalProcesses, tmp_path: Path) -> None:
    handle = procs.start(spec(tmp_path, "echo boom; exit 7"))
    assert wait_until(lambda: not procs.alive(handle))
    assert procs.status(handle) == ExitStatus(running=False, exit_code=7, signal=None)
    assert procs.status(handle).exit_code == 7  # remembered after reaping


def test_stop_graceful(procs: LocalProcesses, tmp_path: Path) -> None:
    handle = procs.start(spec(tmp_path, "exec sleep 30"))
    assert procs.alive(handle)
    t0 = time.monotonic()
    final = procs.stop(handle, grace_s=5)
    assert time.monotonic() - t0 < 2
    assert final == ExitStatus(running=False, exit_code=None, signal=signal.SIGTERM)


def test_stop_escalates_to_sigkill(procs: LocalProcesses, tmp_path: Path) -> None:
    s = spec(tmp_path, "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    handle = procs.start(s)
    wait_for_log(s.log_path, "ready")
    t0 = time.monotonic()
    final = procs.stop(handle, grace_s=0.3)
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 2
    assert final.running is False
    assert final.signal == signal.SIGKILL


def test_forked_child_dies_with_group(procs: LocalProcesses, tmp_path: Path) -> None:
    s = spec(tmp_path, "sleep 30 & echo child=$!; wait")
    handle = procs.start(s)
    wait_for_log(s.log_path, "child=")
    child = int(log_text(s.log_path).split("child=")[1].split()[0])
    assert pid_exists(child)
    procs.stop(handle, grace_s=1)
    assert not pid_exists(child)  # stop returns once no member of the group lives


def test_orphan_left_after_leader_exit_is_killed(procs: LocalProcesses, tmp_path: Path) -> None:
    # The leader exits on SIGTERM but its child ignores it: stop() must still clean the group.
    s = spec(tmp_path, "(trap '' TERM; sleep 30) & echo child=$!; trap 'exit 0' TERM; wait")
    handle = procs.start(s)
    wait_for_log(s.log_path, "child=")
    child = int(log_text(s.log_path).split("child=")[1].split()[0])
    procs.stop(handle, grace_s=2)
    assert not pid_exists(child)  # stop returns once no member of the group lives


def test_adoption_by_a_new_object(procs: LocalProcesses, tmp_path: Path) -> None:
    handle = procs.start(spec(tmp_path, "exec sleep 30"))
    adopter = LocalProcesses()
    assert adopter.status(handle) == ExitStatus(running=True, exit_code=None, signal=None)
    assert adopter.alive(handle)
    stale = ProcessHandle(pid=handle.pid, start_time=handle.start_time + 1)
    assert not adopter.alive(stale)
    adopter.signal_group(stale, signal.SIGKILL)  # recycled pid: must not be signalled
    assert adopter.alive(handle)
    final = adopter.stop(handle, grace_s=2)  # the original parent has not reaped it: a zombie
    assert final == ExitStatus(running=False, exit_code=None, signal=None)
    assert not adopter.alive(handle)
    assert procs.status(handle).signal == signal.SIGTERM  # the parent still learns the cause


def test_unknown_pid_is_not_running(tmp_path: Path) -> None:
    lp = LocalProcesses()
    assert not lp.alive(ProcessHandle(pid=2**22 + 12345, start_time=1))
    lp.signal_group(ProcessHandle(pid=2**22 + 12345, start_time=1), signal.SIGTERM)


def test_run_exit_codes_and_timeout(tmp_path: Path) -> None:
    lp = LocalProcesses()
    assert lp.run(spec(tmp_path, "echo built > artifact; exit 0"), timeout_s=5) == 0
    assert (tmp_path / "artifact").read_text() == "built\n"
    assert lp.run(spec(tmp_path, "exit 5"), timeout_s=5) == 5
    assert lp.run(spec(tmp_path, "kill -9 $$"), timeout_s=5) == 128 + 9
    s = spec(tmp_path, "echo start; sleep 30")
    t0 = time.monotonic()
    assert lp.run(s, timeout_s=0.3) == 124
    assert time.monotonic() - t0 < 2
    assert tail(s.log_path)[-1] == "shipyard: command timed out after 0.3 s"


def test_run_kills_leftover_background_processes(tmp_path: Path) -> None:
    s = spec(tmp_path, "sleep 30 & echo child=$!")
    assert LocalProcesses().run(s, timeout_s=5) == 0
    child = int(log_text(s.log_path).split("child=")[1].split()[0])
    assert wait_until(lambda: not pid_exists(child))


def test_ports_listening(procs: LocalProcesses, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = f"{sys.executable} -m http.server --bind 127.0.0.1 {port}"
    # The server runs as a child of bash (not exec'd), so the whole group must be scanned.
    handle = procs.start(spec(tmp_path, f"{server} & wait"))
    assert wait_until(lambda: port in procs.ports_listening(handle), timeout=5)
    assert procs.ports_listening(handle) == {port}
    assert procs.ports_listening(ProcessHandle(handle.pid, handle.start_time + 1)) == set()
    procs.stop(handle, grace_s=1)
    assert procs.ports_listening(handle) == set()


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("w") as f:
        for i in range(200_000):
            f.write(f"line {i} " + "x" * 40 + "\n")
    t0 = time.monotonic()
    last = tail(log, 3)
    assert time.monotonic() - t0 < 0.1
    assert [line.split()[1] for line in last] == ["199997", "199998", "199999"]
    assert len(tail(log)) == 20
    assert tail(tmp_path / "missing.log") == []
    short = tmp_path / "short.log"
    short.write_text("a\nb\npartial")
    assert tail(short, 10) == ["a", "b", "partial"]
    assert tail(short, 0) == []
    (tmp_path / "empty.log").write_text("")
    assert tail(tmp_path / "empty.log") == []


def test_instance_outlives_the_daemon_and_is_readopted(tmp_path: Path) -> None:
    daemon = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from shipyard.drivers.local import LocalProcesses, ProcessSpec\n"
        "h = LocalProcesses().start(ProcessSpec('while :; do echo tick; sleep 0.05; done',"
        " Path(sys.argv[1]), {'PATH': os.environ['PATH']}, Path(sys.argv[1]) / 'out'))\n"
        "print(json.dumps([h.pid, h.start_time]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", daemon, str(tmp_path)], capture_output=True, text=True, check=True
    )
    pid, start_time = json.loads(out.stdout)
    handle = ProcessHandle(pid, start_time)
    lp = LocalProcesses()
    try:
        assert lp.alive(handle)  # its parent (the "daemon") is gone
        size = (tmp_path / "out" / "current").stat().st_size  # its log writer outlived it too
        assert wait_until(lambda: (tmp_path / "out" / "current").stat().st_size > size)
    finally:
        final = lp.stop(handle, grace_s=1)
    assert final.running is False
    assert not lp.alive(handle)


def test_a_handle_without_a_pid_never_signals_our_own_group() -> None:
    """killpg(0, sig) would signal the caller's own process group: the daemon itself."""
    procs = LocalProcesses()
    for pid in (0, 1):
        handle = ProcessHandle(pid=pid, start_time=0)
        assert not procs.alive(handle)
        assert not procs.stop(handle, grace_s=0.1).running  # and we are still here
        assert procs.ports_listening(handle) == set()


def stat_field_22(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def test_start_time_is_the_stored_quantity(procs: LocalProcesses, tmp_path: Path) -> None:
    """Handles in existing state databases hold /proc/<pid>/stat field 22 (clock ticks)."""
    handle = procs.start(spec(tmp_path, "exec sleep 30"))
    assert handle.start_time == stat_field_22(handle.pid)
    proc = psutil.Process(handle.pid)  # the same instant as psutil sees it, within a second
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    assert abs(handle.start_time / ticks_per_s + psutil.boot_time() - proc.create_time()) <= 1.5
    # A stored handle (a JSON round trip) is re-adopted by a fresh object.
    stored = ProcessHandle(**json.loads(json.dumps(handle.__dict__)))
    assert LocalProcesses().alive(stored)


def test_unreaped_zombie_counts_as_gone(procs: LocalProcesses, tmp_path: Path) -> None:
    handle = procs.start(spec(tmp_path, "exec sleep 30", SHIPYARD_TEST_MARK="zombie"))
    os.kill(handle.pid, signal.SIGKILL)  # procs does not reap it until asked: a zombie
    assert wait_until(lambda: psutil.Process(handle.pid).status() == psutil.STATUS_ZOMBIE)
    adopter = LocalProcesses()
    assert adopter.status(handle) == ExitStatus(running=False, exit_code=None, signal=None)
    assert adopter.ports_listening(handle) == set()
    assert adopter.find("SHIPYARD_TEST_MARK", "zombie") == []
    assert procs.status(handle).signal == signal.SIGKILL  # the parent reaps it and learns why


def test_find_by_marker(procs: LocalProcesses, tmp_path: Path) -> None:
    mark = f"t{os.getpid()}-{time.monotonic_ns()}"
    leader = procs.start(spec(tmp_path, "sleep 30 & wait", SHIPYARD_TEST_MARK=mark))
    other = procs.start(spec(tmp_path, "exec sleep 30", SHIPYARD_TEST_MARK=mark + "x"))
    # The leader and its child share the env; both are found, each with its own start time.
    assert wait_until(lambda: len(procs.find("SHIPYARD_TEST_MARK", mark)) == 2)
    found = procs.find("SHIPYARD_TEST_MARK", mark)
    assert leader in found
    assert other not in found  # exact value, not a prefix
    assert all(h.start_time == stat_field_22(h.pid) for h in found)
    assert handles_with_env("SHIPYARD_TEST_MARK", mark) == found  # the module-level spelling
    assert procs.find("SHIPYARD_TEST_MAR", mark) == []  # exact key
    assert procs.find("SHIPYARD_TEST_MARK", "nobody") == []
    procs.stop(leader, grace_s=1)
    assert wait_until(lambda: procs.find("SHIPYARD_TEST_MARK", mark) == [])
    assert [h.pid for h in procs.find("SHIPYARD_TEST_MARK", mark + "x")] == [other.pid]


def test_tail_method(tmp_path: Path) -> None:
    lp = LocalProcesses()
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\r\nthree\n")
    assert lp.tail(log, 2) == ["two", "three"]
    assert lp.tail(log, 0) == []
    assert lp.tail(tmp_path / "missing.log", 5) == []
    (tmp_path / "dir" / "current").mkdir(parents=True)
    with pytest.raises(RuntimeFailure, match="cannot read log file"):
        lp.tail(tmp_path / "dir", 5)  # its current file exists, but is no readable log


def test_signal_group_not_permitted_raises(
    procs: LocalProcesses, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = procs.start(spec(tmp_path, "exec sleep 30"))

    def refuse(pgid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "killpg", refuse)
    with pytest.raises(RuntimeFailure, match="not permitted"):
        procs.signal_group(handle, signal.SIGTERM)
    monkeypatch.undo()
    assert procs.alive(handle)


def test_timeouts_run_on_the_injected_clock(tmp_path: Path) -> None:
    """With a FakeClock, run's timeout and stop's grace cost no real time (poll_until)."""
    lp = LocalProcesses(clock=FakeClock())
    t0 = time.monotonic()
    assert lp.run(spec(tmp_path, "sleep 30"), timeout_s=600) == 124
    s = spec(tmp_path, "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    handle = lp.start(s)
    try:
        wait_for_log(s.log_path, "ready")
        lp.stop(handle, grace_s=100)  # TERM is ignored: escalates at once in real time
        assert wait_until(lambda: not lp.alive(handle))
        assert lp.status(handle).signal == signal.SIGKILL
    finally:
        lp.stop(handle, grace_s=0)
    assert time.monotonic() - t0 < 3


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ports_listening_ipv6_and_several_members(procs: LocalProcesses, tmp_path: Path) -> None:
    ports = []
    for family, host in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
        with socket.socket(family) as sock:
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
    server = f"{sys.executable} -m http.server"
    command = f"{server} --bind ::1 {ports[0]} & {server} --bind 127.0.0.1 {ports[1]} & wait"
    handle = procs.start(spec(tmp_path, command))
    assert wait_until(lambda: procs.ports_listening(handle) == set(ports), timeout=5)


def test_local_processes_is_a_runtime() -> None:
    runtime: Runtime = LocalProcesses()  # mypy checks the protocol; this checks the names
    for name in ("start", "status", "alive", "stop", "run", "ports_listening", "find", "tail"):
        assert callable(getattr(runtime, name))
