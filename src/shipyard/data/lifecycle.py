"""A datastore's life: created from a Blueprint (or a restore), started and watched through
the Runtime like any instance, re-adopted after a daemon restart (never restarted for it),
stopped cleanly by `shipyard down`, deleted only on request.

The stage owns the rows, ports, secrets and processes; the engine of each kind
(data/engines.py) knows its server. Callers hold the datastore's claim (``claim_key``) while
they change it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from shipyard.blueprint.spec import DatastoreSpec
from shipyard.context import Context, Emit
from shipyard.data.engines import DatastoreEngine
from shipyard.errors import Conflict, RuntimeFailure, ShipyardError, UsageError
from shipyard.plan.plan import RESTART_FIELDS, datastore_changes, datastore_problems
from shipyard.records import Datastore, DatastoreStatus
from shipyard.run.runtime import ProcessHandle

log = logging.getLogger("shipyard.data")
READY_TIMEOUT_S = 120.0
PORT_RANGE = 1000
port_lock = threading.Lock()  # allocate + record a datastore's port


def claim_key(name: str) -> str:
    """The claim a datastore's changes hold: creating, updating, restarting, deleting it
    (services are claimed by their bare name)."""
    return f"db:{name}"


def work_key(name: str) -> str:
    """The claim of work that reads a datastore without changing it (a backup, a drill, a
    restore from it): held apart from ``claim_key``, so a crashed server is restarted and a
    deploy goes on during an hour-long drill."""
    return f"db-work:{name}"


def engine_of(ctx: Context, kind: str) -> DatastoreEngine:
    engine = ctx.engines.get(kind)
    if engine is None:
        raise UsageError(f"this Shipyard has no engine for {kind} datastores")
    return engine


def directory(ctx: Context, name: str) -> Path:
    """SHIPYARD_HOME/data/<name>, the name made safe for a path (Render allows spaces). Its
    last part also names its backups (SHIPYARD_HOME/backups/<kind>/<it>): a name used before
    (a deleted datastore whose backups are kept) gets a suffix, so no two share backups."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if slug != name or not slug[:1].isalnum() or len(slug) > 48:
        # also a pgBackRest stanza: a letter or digit first, at most 63 characters
        stem = slug.lstrip("._-")[:40] or "db"
        slug = f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    taken = {Path(d.dir).name for d in ctx.data.datastores()}
    candidate = slug
    while candidate in taken or _used(ctx, candidate):
        candidate = f"{slug}-{secrets.token_hex(2)}"
    return ctx.settings.data_dir / candidate


def _used(ctx: Context, slug: str) -> bool:
    backups = ctx.settings.home / "backups"
    return (ctx.settings.data_dir / slug).exists() or any(
        (backups / kind / slug).exists() for kind in ("postgres", "keyvalue")
    )


def log_dir(ds: Datastore) -> Path:
    return Path(ds.dir) / "log"


def secrets_of(ctx: Context, ds: Datastore) -> dict[str, str]:
    return {k: ctx.box.decrypt(v) for k, v in ctx.data.datastore_secrets(ds.name).items()}


def handle_of(ds: Datastore) -> ProcessHandle | None:
    if ds.pid is None or ds.start_time is None:
        return None
    return ProcessHandle(ds.pid, ds.start_time)


def running(ctx: Context, ds: Datastore) -> bool:
    handle = handle_of(ds)
    return handle is not None and ctx.runtime.alive(handle)


def live(ctx: Context) -> list[Datastore]:
    """Every datastore that is not deleted."""
    return [d for d in ctx.data.datastores() if d.status != DatastoreStatus.DELETED]


def connections(ctx: Context) -> dict[str, dict[str, str]]:
    """Every datastore's connection properties (Render's fromDatabase / fromService names)."""
    out: dict[str, dict[str, str]] = {}
    for ds in live(ctx):
        engine = ctx.engines.get(ds.kind)
        if engine is not None and ds.status != DatastoreStatus.FAILED:
            out[ds.name] = engine.connection(ds, secrets_of(ctx, ds))
    return out


# --- creating ---------------------------------------------------------------------------------


def allocate_port(ctx: Context) -> int:
    """The lowest port from settings.data_port_base up that no datastore holds and nothing
    listens on. The caller holds ``port_lock`` until the port is recorded."""
    used = ctx.data.datastore_ports() | ctx.state.used_ports()
    used |= {ctx.settings.http_port, ctx.settings.api_port}
    base = ctx.settings.data_port_base
    for port in range(base, base + PORT_RANGE):
        if port not in used and _bindable(port):
            return port
    raise RuntimeFailure(
        f"no free port for a datastore between {base} and {base + PORT_RANGE - 1} "
        "(SHIPYARD_DATA_PORT_BASE)"
    )


def _bindable(port: int) -> bool:
    for address in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def record(
    ctx: Context, spec: DatastoreSpec, blueprint_id: str, origin: str,
    secrets: Mapping[str, str], version: str,
) -> Datastore:  # fmt: skip
    """The row of a new datastore (status creating): its port, directory, secrets."""
    ctx.disk.require()
    with port_lock:
        port = allocate_port(ctx)
        return ctx.data.add_datastore(
            spec, version, port, str(directory(ctx, spec.name)), blueprint_id, origin,
            {k: ctx.box.encrypt(v) for k, v in secrets.items()},
        )  # fmt: skip


def create(
    ctx: Context, spec: DatastoreSpec, blueprint_id: str, emit: Emit, origin: str = "blueprint",
    secrets: Mapping[str, str] | None = None,
) -> Datastore:  # fmt: skip
    """Record a new datastore (port, directory, generated secrets), create its files and start
    it. A replica copies its primary (which must be available) and shares its passwords."""
    engine = engine_of(ctx, spec.kind)
    version = engine.version_for(spec)
    primary = ctx.data.datastore(spec.primary) if spec.primary else None
    if secrets is None:
        secrets = secrets_of(ctx, primary) if primary else engine.new_secrets(spec)
    ds = record(ctx, spec, blueprint_id, origin, secrets, version)
    kind = "PostgreSQL" if spec.kind == "postgres" else "Redis"
    emit(f"{ds.label}: creating ({kind} {version}, port {ds.port})", "info")
    for attempt in range(3):
        try:
            return start(ctx, ds, emit, primary=primary)
        except Exception as exc:
            if not isinstance(exc, ShipyardError):
                message = f"{type(exc).__name__}: {exc}"
                ctx.data.update_datastore(ds.name, status=DatastoreStatus.FAILED, reason=message)
                raise RuntimeFailure(f"{ds.label}: {message}") from exc
            if attempt < 2 and not _bindable(ds.port):
                # Another process took the port between its choice and the server's start
                # (nobody was given it yet): choose again.
                with port_lock:
                    port = allocate_port(ctx)
                    ctx.data.update_datastore(ds.name, port=port)
                emit(f"{ds.label}: port {ds.port} was taken meanwhile; using {port}", "warning")
                ds = ctx.data.datastore(ds.name)
                continue
            ctx.data.update_datastore(ds.name, status=DatastoreStatus.FAILED, reason=exc.message)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def start(ctx: Context, ds: Datastore, emit: Emit, primary: Datastore | None = None) -> Datastore:
    """Write its files, start its server, wait until it is ready, configure it; it is then
    available. A server already running (re-adopted) is left as it is."""
    engine = engine_of(ctx, ds.kind)
    secrets = secrets_of(ctx, ds)
    if running(ctx, ds):
        return ds
    if primary is None and ds.spec.primary:
        primary = ctx.data.find_datastore(ds.spec.primary)
    engine.provision(ds, secrets, primary)
    spec = engine.process(ds, secrets, log_dir(ds))
    log_dir(ds).mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = ctx.runtime.start(spec)
    now = ctx.clock.now()
    ctx.data.update_datastore(ds.name, pid=handle.pid, start_time=handle.start_time,
                              started_at=now)  # fmt: skip
    ds = ctx.data.datastore(ds.name)
    try:
        engine.wait_ready(ds, secrets, READY_TIMEOUT_S, lambda: ctx.runtime.alive(handle))
        engine.configure(ds, secrets)
    except ShipyardError:
        ctx.runtime.stop(handle, engine.stop_grace_s, engine.stop_signal, whole_group=False)
        tail = ctx.runtime.tail(log_dir(ds), 8)
        if tail:
            emit(f"{ds.label}: its last log lines:\n" + "\n".join(f"  {t}" for t in tail),
                 "error")  # fmt: skip
        raise
    ctx.data.update_datastore(ds.name, status=DatastoreStatus.AVAILABLE, reason="")
    emit(f"{ds.label}: available on port {ds.port}", "info")
    return ctx.data.datastore(ds.name)


def stop(ctx: Context, ds: Datastore, status: DatastoreStatus = DatastoreStatus.STOPPED) -> None:
    """Stop its server cleanly (PostgreSQL: fast shutdown, no crash recovery at next start)."""
    engine = engine_of(ctx, ds.kind)
    handle = handle_of(ds)
    if handle is not None:
        ctx.runtime.stop(handle, engine.stop_grace_s, engine.stop_signal, whole_group=False)
    ctx.data.update_datastore(ds.name, status=status, pid=None, start_time=None)


# --- from a Blueprint -------------------------------------------------------------------------


def spec_problems(ctx: Context, spec: DatastoreSpec) -> list[str]:
    """Why a new datastore ``spec`` cannot be created on this machine (its engine, its
    version), checked before anything is changed."""
    engine = ctx.engines.get(spec.kind)
    if engine is None:
        return [f"{spec.name}: this Shipyard has no engine for {spec.kind} datastores"]
    try:
        engine.check(spec)
    except UsageError as exc:
        return [exc.message]
    return []


def apply(ctx: Context, spec: DatastoreSpec, blueprint_id: str, emit: Emit) -> Datastore:
    """Make the datastore ``spec`` describes exist, run, and have the spec's settings."""
    existing = ctx.data.find_datastore(spec.name)
    if existing is None:
        return create(ctx, spec, blueprint_id, emit)
    problems = datastore_problems(spec, existing.spec, existing.version)
    problems += spec_problems(ctx, replace(spec, version=None))
    if problems:
        raise Conflict("; ".join(problems), fields={"datastore": spec.name})
    changed = datastore_changes(spec, existing.spec)
    spec = replace(spec, version=existing.spec.version)
    ctx.data.update_datastore(spec.name, spec=spec, blueprint_path=blueprint_id)
    ds = ctx.data.datastore(spec.name)
    if set(changed) & RESTART_FIELDS and running(ctx, ds):
        emit(f"{ds.label}: restarting to apply {', '.join(changed)}", "warning")
        stop(ctx, ds)
        ds = ctx.data.datastore(spec.name)
    elif changed:
        emit(f"{ds.label}: {', '.join(changed)} updated", "info")
    if not running(ctx, ds):
        return start(ctx, ds, emit)
    if ds.status != DatastoreStatus.AVAILABLE:
        ctx.data.update_datastore(ds.name, status=DatastoreStatus.AVAILABLE, reason="")
    return ctx.data.datastore(ds.name)


def delete(ctx: Context, name: str) -> Datastore:
    """`shipyard db delete NAME --yes`: its server stopped, its files removed; the row stays,
    renamed "NAME (deleted <time>)" with status deleted, so its backups (kept for the
    retention period) can still be listed and restored, and NAME is free again."""
    ds = ctx.data.datastore(name)
    if ds.status == DatastoreStatus.DELETED:
        raise Conflict(f"{ds.label} is deleted already.", fields={"datastore": name})
    replicas = [d.name for d in live(ctx) if d.spec.primary == name]
    if replicas:
        raise Conflict(
            f"{ds.label} has read replicas ({', '.join(replicas)}): delete them first.",
            fields={"datastore": name, "replicas": replicas},
        )
    stop(ctx, ds)
    primary = ctx.data.find_datastore(ds.spec.primary) if ds.spec.primary else None
    forget = getattr(ctx.engines.get(ds.kind), "drop_slot", None)
    if primary is not None and forget is not None and running(ctx, primary):
        forget(primary, ds.name)  # its primary no longer keeps WAL for it
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ctx.clock.now()))
    tomb = f"{name} (deleted {stamp})"
    if ctx.data.find_datastore(tomb) is not None:  # deleted twice within a second
        tomb = f"{name} (deleted {stamp}.{secrets.token_hex(2)})"
    ctx.data.rename_datastore(name, tomb)
    ctx.data.update_datastore(tomb, status=DatastoreStatus.DELETED, reason=f"deleted {stamp} UTC")
    base = Path(ds.dir)
    for child in base.iterdir() if base.is_dir() else []:
        if child.name != "pgbackrest":  # its repository's configuration: restores need it
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    return ctx.data.datastore(tomb)


def purge(ctx: Context, ds: Datastore) -> None:
    """A deleted datastore past its retention: its local backups, directory and row removed
    (copies in the off-site bucket follow the bucket's own lifecycle rules)."""
    slug = Path(ds.dir).name
    for kind in ("postgres", "keyvalue"):
        shutil.rmtree(ctx.settings.home / "backups" / kind / slug, ignore_errors=True)
    shutil.rmtree(ds.dir, ignore_errors=True)
    ctx.data.remove_datastore(ds.name)
