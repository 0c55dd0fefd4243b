"""The daemon: wires concrete drivers, recovers state, supervises, serves the API.

Killing it (even with SIGKILL) stops nothing else: instances and HAProxy keep serving, and the
next daemon re-adopts them. `shipyard down` (POST /v1/shutdown) stops everything it started.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import socket
import stat
import threading
from pathlib import Path

import uvicorn
from starlette.types import Receive, Scope, Send

from shipyard.clock import SystemClock
from shipyard.context import Context
from shipyard.controlplane.api import create_app
from shipyard.controlplane.cronstate import cron_state
from shipyard.controlplane.datastate import DataState
from shipyard.controlplane.db import Database
from shipyard.controlplane.engine import Engine
from shipyard.controlplane.platform import create_platform_app
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.state import State
from shipyard.controlplane.triggerops import Triggers
from shipyard.controlplane.triggerstate import TriggerState
from shipyard.data.disks import release_all as release_disks
from shipyard.data.supervise import DataSupervisor
from shipyard.data.supervise import bring_up as bring_up_datastores
from shipyard.data.supervise import stop_all as stop_datastores
from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge
from shipyard.drivers.local.logfiles import MISSING_LOGD, find_logd
from shipyard.drivers.local.ports import bind_exclusive, listening_holder, port_free
from shipyard.drivers.local.process import LocalProcesses
from shipyard.drivers.local.volumes import LoopVolumes
from shipyard.drivers.postgres.backups import PgBackRestArchive
from shipyard.drivers.postgres.engine import PostgresEngine
from shipyard.drivers.redis.engine import KeyValueEngine
from shipyard.errors import Conflict, ShipyardError
from shipyard.records import OF_RELEASE, OperationKind
from shipyard.release.files import make_private
from shipyard.route.desired import allocate_internal_port
from shipyard.run.cron import CronScheduler, env_options
from shipyard.run.lifecycle import stop_all
from shipyard.run.recovery import recover
from shipyard.run.supervisor import Supervisor
from shipyard.settings import INTERNAL_PORT_LIMIT, Settings
from shipyard.source import gitrepo

log = logging.getLogger("shipyard.daemon")
SHUTDOWN_WAIT_S = 120.0  # how long `down` waits for running operations


OWN_ENTRIES = frozenset(
    ("services", "data", "disks", "backups", "haproxy", "toolchains", "tmp", "token", "secret.key",
     "daemon.lock", "daemon.pid", "daemon-log", "daemon.log", ".reserve")
)  # fmt: skip
OWN_PREFIXES = ("state.db",)
HOME_MODE = 0o711


def secure_home(home: Path) -> None:
    """Make SHIPYARD_HOME private: everything this process (and the builds and instances it
    starts) creates 0600/0700 (umask 077). The home itself, ``data`` and ``backups`` are 0711:
    traversable, not listable, so a datastore's server account reaches its own directory (and
    nothing else). A home made before files were private gets every existing file's group and
    other bits removed, once."""
    os.umask(0o077)
    home.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(home.stat().st_mode) not in (0o700, HOME_MODE):
        # Only what Shipyard keeps there: SHIPYARD_HOME may be a directory shared with other
        # things (set to $HOME, say), whose modes are not ours to change. Datastores' files
        # belong to their servers' accounts and keep their modes.
        for entry in home.iterdir():
            if entry.name not in ("data", "disks", "backups") and (
                entry.name in OWN_ENTRIES or entry.name.startswith(OWN_PREFIXES)
            ):
                make_private(entry)
    os.chmod(home, HOME_MODE)
    for traversable in ("data", "backups"):
        (home / traversable).mkdir(exist_ok=True)
        os.chmod(home / traversable, HOME_MODE)


def ensure_token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def _lock(settings: Settings) -> int:
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.home / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(
            f"A Shipyard daemon is already running for {settings.home} (pid {_read_pid(settings)})."
        ) from None
    settings.daemon_pid_path.write_text(str(os.getpid()))
    return fd


def _read_pid(settings: Settings) -> str:
    try:
        return settings.daemon_pid_path.read_text().strip()
    except OSError:
        return "?"


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if find_logd() is None:
            raise ShipyardError(MISSING_LOGD)
        clock = SystemClock()
        db = Database(settings.db_path)
        edge = HAProxyEdge(
            EdgeOptions(
                dir=settings.haproxy_dir,
                http_bind=settings.http_bind,
                http_port=settings.http_port,
                internal_port_base=settings.internal_port_base,
                internal_port_limit=INTERNAL_PORT_LIMIT,
            ),
            haproxy_bin=settings.haproxy_bin,
            clock=clock,
        )
        self.ctx = Context(
            settings=settings,
            state=State(db, clock),
            box=SecretBox(settings.key_path),
            runtime=LocalProcesses(clock),
            edge=edge,
            clock=clock,
            data=DataState(db, clock),
            engines={
                "postgres": PostgresEngine(
                    archive=PgBackRestArchive(settings.home, settings.offsite)
                ),
                "keyvalue": KeyValueEngine(settings.home, offsite=settings.offsite),
            },
            volumes=LoopVolumes(),
        )
        self.engine = Engine(self.ctx)
        self.triggers = Triggers(self.engine, TriggerState(db, self.ctx.box, clock))
        self.supervisor = Supervisor(self.ctx, self.engine.claims)
        self.data_supervisor = DataSupervisor(self.ctx, self.engine.claims)
        self.cron = CronScheduler(self.ctx, cron_state(self.ctx), env_options())
        self.server: uvicorn.Server | None = None

    def converge(self) -> None:
        """Bring every service with a live release back to its desired instance count. One
        service that cannot be converged never keeps the daemon (and the others) down."""
        for svc in self.ctx.state.services():
            if svc.current_release is None:
                continue
            count = sum(
                1
                for i in self.ctx.state.instances(svc.name, OF_RELEASE)
                if i.release == svc.current_release
            )
            if count >= svc.desired_instances:
                continue
            log.info("starting %s: %d of %d instance(s) running", svc.name, count,
                     svc.desired_instances)  # fmt: skip
            try:
                self.engine.scale(svc.name, svc.desired_instances, kind=OperationKind.CONVERGE)
            except ShipyardError as exc:
                log.error("cannot bring %s back up: %s", svc.name, exc.message)

    def shutdown(self, stop_services: bool) -> None:
        """Orderly stop: refuse new operations, let running ones and restarts finish, stop the
        edge (in-flight requests complete), then the instances."""

        def run() -> None:
            if stop_services:
                self.engine.closing = True
                self.supervisor.stop()
                held = self.engine.claim_all("shutdown", timeout_s=SHUTDOWN_WAIT_S)
                self.data_supervisor.stop()
                self.cron.stop(interrupt_runs=True)  # `down` stops running cron jobs too
                self.ctx.edge.stop()
                instances = self.ctx.state.instances()
                stop_all(self.ctx, instances, grace_s=10.0)
                log.info("stopped %d instance(s) and HAProxy", len(instances))
                release_disks(self.ctx)
                stop_datastores(self.ctx)  # after the apps that use them
                self.engine.claims.free(held, "shutdown")
            if self.server is not None:
                self.server.should_exit = True

        threading.Thread(target=run, daemon=True).start()

    def _claim_ports(self) -> socket.socket:
        """Bind the API port (held from now on) and check the public HTTP port, before anything
        starts: a port another process holds fails the start, naming that process, and leaves
        nothing running. The HTTP port may be held by this home's own HAProxy (re-adopted)."""
        cfg = self.settings
        try:
            api = bind_exclusive("127.0.0.1", cfg.api_port)
        except OSError:
            raise _port_taken(cfg.api_port, "SHIPYARD_API_PORT", "API") from None
        if not self.ctx.edge.is_running() and not port_free(cfg.http_bind, cfg.http_port):
            api.close()
            raise _port_taken(cfg.http_port, "SHIPYARD_HTTP_PORT", "public HTTP")
        return api

    def serve(self) -> None:
        lock_fd = _lock(self.settings)
        sockets: list[socket.socket] = []
        try:
            token = ensure_token(self.settings.token_path)
            api_socket = self._claim_ports()
            sockets.append(api_socket)
            platform_socket = bind_exclusive("127.0.0.1", 0)
            sockets.append(platform_socket)
            self.ctx.platform_port = int(platform_socket.getsockname()[1])
            with self.ctx.port_lock:
                self.ctx.platform_internal_port = allocate_internal_port(self.ctx)
            self.ctx.disk.ensure_reserve()
            (self.settings.home / "tmp").mkdir(exist_ok=True)
            for repo in self.triggers.state.repos():  # the hook names this daemon's address
                gitrepo.install_hook(self.settings, repo.name)
            bring_up_datastores(self.ctx)  # before the apps that use them
            recover(self.ctx)
            self.converge()  # before the supervisor, so its restarts cannot hold a claim yet
            self.supervisor.start()
            self.data_supervisor.start()
            self.cron.start()
            self.triggers.start()
            api = create_app(self.engine, token, self.shutdown, triggers=self.triggers)
            platform = create_platform_app(self.triggers, token)
            platform_port = self.ctx.platform_port

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                """One server, two listeners: the platform port serves the platform app
                (routed from the public listener), the API port everything else."""
                server = scope.get("server") or ("", 0)
                if scope["type"] != "lifespan" and server[1] == platform_port:
                    await platform(scope, receive, send)
                else:
                    await api(scope, receive, send)

            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.settings.api_port,
                log_level="warning",
                access_log=False,
            )
            self.server = uvicorn.Server(config)
            log.info(
                "Shipyard API on %s, HTTP edge on %s:%d",
                self.settings.api_url,
                self.settings.http_bind,
                self.settings.http_port,
            )
            self.server.run(sockets=[api_socket, platform_socket])
        finally:
            self.triggers.stop()
            self.supervisor.stop()
            self.data_supervisor.stop()
            self.cron.stop()  # running jobs go on; the next daemon re-adopts them
            for sock in sockets:  # a start-up that failed must not keep the port
                sock.close()
            self.settings.daemon_pid_path.unlink(missing_ok=True)
            os.close(lock_fd)


def _port_taken(port: int, setting: str, what: str) -> Conflict:
    holder = listening_holder(port) or "another process"
    return Conflict(
        f"Port {port} ({setting}, the {what} listener) is in use by {holder}. Stop that "
        f"process, or give this Shipyard another port with {setting}=<port>.",
        fields={"port": port, "setting": setting, "holder": holder},
    )


def run_daemon(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    secure_home(settings.home)
    Daemon(settings).serve()


__all__ = ["Daemon", "ensure_token", "run_daemon", "secure_home"]
