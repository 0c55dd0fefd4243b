"""`shipyard down` when the daemon is not running: stop what the state says is running."""

from __future__ import annotations

from shipyard.clock import SystemClock
from shipyard.controlplane.datastate import DataState
from shipyard.controlplane.db import Database
from shipyard.controlplane.state import State
from shipyard.data.engines import DatastoreEngine
from shipyard.data.lifecycle import handle_of as datastore_handle
from shipyard.drivers.haproxy import EdgeOptions, HAProxyEdge
from shipyard.drivers.local.process import LocalProcesses
from shipyard.drivers.postgres.backups import PgBackRestArchive
from shipyard.drivers.postgres.engine import PostgresEngine
from shipyard.drivers.redis.engine import KeyValueEngine
from shipyard.records import DatastoreStatus
from shipyard.run.lifecycle import handle_of
from shipyard.settings import Settings


def stop_everything(settings: Settings) -> int:
    if not settings.db_path.exists():
        return 0
    clock = SystemClock()
    state = State(Database(settings.db_path), clock)
    runtime = LocalProcesses(clock)
    instances = state.instances()
    for inst in instances:
        runtime.stop(handle_of(inst), 10.0)
        state.update_instance(inst.id, state="stopped")
    data = DataState(state.db, clock)
    engines: dict[str, DatastoreEngine] = {
        "postgres": PostgresEngine(archive=PgBackRestArchive(settings.home, settings.offsite)),
        "keyvalue": KeyValueEngine(settings.home, offsite=settings.offsite),
    }
    for ds in sorted(data.datastores(), key=lambda d: d.spec.primary is None):  # replicas first
        if ds.status == DatastoreStatus.DELETED:
            continue
        handle = datastore_handle(ds)
        engine = engines.get(ds.kind)
        if handle is not None and engine is not None:
            runtime.stop(handle, engine.stop_grace_s, engine.stop_signal, whole_group=False)
        data.update_datastore(ds.name, status=DatastoreStatus.STOPPED, pid=None, start_time=None)
    HAProxyEdge(
        EdgeOptions(
            dir=settings.haproxy_dir, http_bind=settings.http_bind, http_port=settings.http_port
        ),
        haproxy_bin=settings.haproxy_bin,
    ).stop()
    return len(instances)
