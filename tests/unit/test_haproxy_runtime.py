"""AdminClient against a fake admin socket speaking HAProxy's interactive (prompt) mode."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.drivers.haproxy.runtime import AdminClient, add_map, show_stat
from shipyard.errors import EdgeError


class FakeAdmin:
    """Answers ``prompt``, ``show info`` (Pid), ``echo <x>`` and payloads like HAProxy 2.6."""

    def __init__(self, path: Path, pid: int = 42) -> None:
        self.path, self.pid = path, pid
        self.received: list[str] = []
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, conn.makefile("rb") as lines:
            prompt = False
            for raw in lines:
                line = raw.decode().rstrip("\n")
                if line == "prompt":
                    prompt = True
                    conn.sendall(b"\n> ")
                    continue
                self.received.append(line)
                if line.endswith("<<"):
                    plus = b"+ "
                    for more in lines:
                        plus += b"+ "
                        if not more.strip():
                            break
                        self.received.append(more.decode().rstrip("\n"))
                    conn.sendall(plus + b"\n> ")
                    continue
                if line == "show info":
                    answer = f"Name: HAProxy\nPid: {self.pid}\n\n"
                elif line.startswith("show stat"):
                    answer = "# pxname,svname,qcur,scur,status\nbe_h0,s1,0,2,UP\n\n"
                else:
                    answer = line.removeprefix("echo ") + "\n\n"
                conn.sendall(answer.encode() + (b"> " if prompt else b""))

    def drop_connections(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def close(self) -> None:
        self.server.close()
        self.drop_connections()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeAdmin]:
    server = FakeAdmin(tmp_path / "admin.sock")
    try:
        yield server
    finally:
        server.close()


def test_one_connection_for_many_commands(fake: FakeAdmin) -> None:
    client = AdminClient(fake.path)
    answers = [client.command(f"echo {i}") for i in range(50)]
    assert answers == [f"{i}\n\n" for i in range(50)]
    assert client.connects == 1 and fake.accepted == 1
    assert client.counts["echo 7"] == 1


def test_reconnects_once_when_haproxy_closed_the_idle_connection(fake: FakeAdmin) -> None:
    client = AdminClient(fake.path)
    assert client.command("echo a") == "a\n\n"
    fake.drop_connections()  # HAProxy's ``stats timeout`` does this
    assert client.command("echo b") == "b\n\n"
    assert client.connects == 2


def test_idle_connections_are_not_reused_past_max_idle(fake: FakeAdmin) -> None:
    client = AdminClient(fake.path, max_idle_s=0)
    client.command("echo a")
    client.command("echo b")
    assert client.connects == 2


def test_reset_drops_pooled_connections_and_checks_the_worker(fake: FakeAdmin) -> None:
    client = AdminClient(fake.path)
    client.command("echo a")
    client.reset(expect_pid=42)
    assert client.command("echo b") == "b\n\n"
    assert client.connects == 2 and fake.received[-2:] == ["show info", "echo b"]


def test_payload_prompts_are_stripped(fake: FakeAdmin) -> None:
    client = AdminClient(fake.path)
    add_map(client, Path("/x/hosts.map"), [("a.test", "be_h0"), ("b.test", "be_h1")])
    assert fake.received[-3:] == ["add map /x/hosts.map <<", "a.test be_h0", "b.test be_h1"]
    assert client.command("echo after") == "after\n\n"  # still in step


def test_concurrent_commands_use_a_small_pool(fake: FakeAdmin) -> None:
    client = AdminClient(fake.path, pool_size=2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert show_stat(client)[("be_h0", "s1")].scur == 2
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and client.connects <= 4


def test_unreachable_socket_is_an_edge_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="did not answer"):
        AdminClient(tmp_path / "nothing.sock", timeout=0.2).command("show info")
